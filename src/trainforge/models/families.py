"""Model families: what kind of model this is, how it is built and where its parts are — declared once each.

A family is one architecture as trainforge uses it. Every question that used to be an if-chain on
"bert" / "llama" (or a guess such as "the longest ModuleList is the blocks") reads the family:

    Family ─┬─ model_types       HF `model_type`s it covers (MiniLM is model_type "bert")
            ├─ decoder           causal LM, or bidirectional encoder
            ├─ *_class           config / causal-LM / classifier classes, "module:Name", imported on use
            ├─ blocks            the stack of transformer blocks, relative to the backbone
            ├─ embeddings        modules below block 0, relative to the backbone
            ├─ heads             what the task model adds on top of the backbone
            ├─ lora_targets      the attention projections LoRA adapts
            ├─ concat_pool_class ULMFiT concat pooling head (llama only, models/pooling.py)
            ├─ weight_only_int8  compress.weight_only_int8=auto writes that variant
            ├─ prune_layout      which structured-pruning view fits the blocks (compress/prune.py)
            ├─ moe               where a mixture-of-experts block's router and experts are (models/moe.py)
            └─ bpe               the specials and framing of a fresh BPE (models/tokenizer.py)

Paths are relative to the *backbone*, transformers' own `model.base_model` (the `model` of a
LlamaFor*, the `bert` of a BertFor*, the bare model itself), so one path serves the causal LM,
the classifier and the bare model, and a peft wrapper is looked through with get_base_model():

    LlamaForSequenceClassification        model.layers        = backbone "model" + blocks "layers"
    BertForSequenceClassification         bert.encoder.layer  = backbone "bert"  + blocks "encoder.layer"
    GPT2LMHeadModel                       transformer.h       = backbone "transformer" + blocks "h"

A model type nobody registered gets a fallback family: decoder-ness from transformers' auto
mappings (`is_causal_lm`, the one place that question is answered), blocks from conventional paths
tried in order, LoRA targets from peft's table. When no path fits, the UserError says to register a
family. `register_family` is how a new family (an image or audio backbone) is added.

Importing this module imports neither torch nor transformers (`trainforge --help` stays fast).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any, Literal

from trainforge.errors import UserError

CONVENTIONAL_BLOCKS = ("layers", "encoder.layer", "h", "blocks", "decoder.layers", "encoder.layers", "transformer.layers")
"""Where an unregistered model's blocks usually are, relative to its backbone; the first that exists wins."""
CONVENTIONAL_EMBEDDINGS = ("embed_tokens", "embeddings", "wte", "wpe", "word_embeddings", "embed_positions")


@dataclass(frozen=True)
class BpeFraming:
    """How a fresh byte-level BPE frames a text for this family (models/tokenizer.py)."""

    specials: tuple[tuple[str, str], ...]
    """(tokenizer attribute, token) in id order: the first gets id 0."""
    first: str
    """Token before the text (the encoder's pooled [CLS]; the decoder's <s>)."""
    last: str
    """Token after it (and between a pair's texts)."""


@dataclass(frozen=True)
class MoeLayout:
    """Where a mixture-of-experts decoder keeps its routing, relative to one block; blocks without `router` are dense."""

    router: str
    """Dotted path from a block to its router (returns router_logits, top-k weights, top-k expert indices)."""
    experts: str
    """Dotted path from a block to its routed experts (fused 3-D weights in transformers 5)."""
    balancing: Literal["bias", "router_logits"]
    """bias: sigmoid scores + a per-expert e_score_correction_bias (DeepSeek-V3's auxiliary-loss-free balancing);
    router_logits: softmax routing balanced by the family's own load_balancing_loss_func (Mixtral, Qwen-MoE)."""
    experts_field: str
    """Config field with the number of routed experts."""
    top_k_field: str = "num_experts_per_tok"
    """Config field with the experts each token is routed to."""


@dataclass(frozen=True)
class Family:
    name: str
    """What presets and `trainforge models list` call it."""
    model_types: tuple[str, ...]
    """The Hugging Face config `model_type`s it covers."""
    decoder: bool
    """A causal LM (pools the last real token, can pretrain) rather than a bidirectional encoder (pools [CLS])."""
    blocks: tuple[str, ...]
    """Dotted path(s) from the backbone to the ModuleList of transformer blocks; the first that exists is used."""
    embeddings: tuple[str, ...]
    """Dotted paths from the backbone to the modules below block 0 (missing ones are skipped)."""
    heads: tuple[str, ...]
    """Attributes of the task model above the backbone: the classifier / LM head."""
    lora_targets: tuple[str, ...] | None
    """Module names LoRA adapts (train.lora.target_modules=auto); None: peft's table, else all-linear."""
    config_class: str | None = None
    """"module:Name" of the config class (presets, checking config_overrides)."""
    causal_lm_class: str | None = None
    classifier_class: str | None = None
    dropout_fields: tuple[str, ...] = ()
    """Config fields that take train.dropout."""
    preset_defaults: dict[str, Any] = field(default_factory=dict)
    """Config fields a fresh preset sets beyond transformers' defaults."""
    concat_pool_class: str | None = None
    """"module:Name" of the ULMFiT concat-pooling classifier (train.pooling=concat); None: not supported."""
    weight_only_int8: bool | None = None
    """compress.weight_only_int8=auto writes weight-only INT8 for this family; None: for decoders only
    (their batch-1 generation is memory-bound, so smaller weights are the speed-up; encoders gain more
    from dynamic INT8 activations)."""
    prune_layout: Literal["bert", "llama"] | None = None
    """The structured-pruning view of a block (compress/prune.py); None: structured pruning refuses."""
    moe: MoeLayout | None = None
    """Mixture of experts: where the routers and experts are; None: a dense model."""
    bpe: BpeFraming | None = None
    """Specials and framing of a BPE trained from scratch; None: this family only reuses a model's tokenizer."""
    registered: bool = True
    """False for the fallback made up for an unregistered model type."""
    modality: Literal["text", "image", "image-text", "audio"] = "text"
    """What the model reads: the task that builds it checks this (an image task refuses a text preset)."""
    int8_dynamic: bool = True
    """torch's dynamic INT8 speeds this family up (its work is in Linear layers); False for conv nets, whose
    work is in Conv2d layers that dynamic quantisation leaves in fp32 (compress refuses with that reason)."""

    @property
    def poolings(self) -> tuple[str, ...]:
        """train.pooling values this family supports."""
        return ("last", "concat") if self.concat_pool_class else ("last",)

    @property
    def int8_weight_only_by_default(self) -> bool:
        return self.decoder if self.weight_only_int8 is None else self.weight_only_int8

    def config_cls(self):
        return _import(self.config_class, self, "config")

    def causal_lm_cls(self):
        return _import(self.causal_lm_class, self, "causal-LM")

    def classifier_cls(self):
        return _import(self.classifier_class, self, "sequence-classifier")

    def concat_pool_cls(self):
        return _import(self.concat_pool_class, self, "concat-pooling classifier")

    def blocks_of(self, model):
        """The ModuleList of transformer blocks of `model` (a task model, its backbone, or a peft wrapper)."""
        base = backbone(model)
        for path in self.blocks:
            found = _attr(base, path)
            if found is not None and len(found) > 0:
                return found
        where = " or ".join(f"{type(base).__name__}.{p}" for p in self.blocks)
        raise UserError(f"{type(_unwrap(model)).__name__} (model_type {self.model_types[0]!r}): no stack of transformer "
                        f"blocks at {where}; register a family for it (trainforge.models.families.register_family) "
                        f"naming where its blocks are")

    def embedding_modules(self, model) -> list:
        """The modules below block 0 that exist on `model`, and its input embedding whatever it is called."""
        base = backbone(model)
        found = [m for m in (_attr(base, p) for p in self.embeddings) if m is not None]
        get = getattr(_unwrap(model), "get_input_embeddings", None)
        if callable(get):
            try:
                found.append(get())
            except (NotImplementedError, AttributeError):  # a model transformers cannot say this for
                pass
        return found


_FAMILIES: dict[str, Family] = {}
_BY_MODEL_TYPE: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family; a name or model_type that another family already claims is a ValueError."""
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    taken = [t for t in family.model_types if t in _BY_MODEL_TYPE]
    if taken:
        raise ValueError(f"model_type {taken[0]!r} already belongs to family {_BY_MODEL_TYPE[taken[0]].name!r}")
    _FAMILIES[family.name] = family
    for t in family.model_types:
        _BY_MODEL_TYPE[t] = family
    return family


def registered_families() -> list[Family]:
    return list(_FAMILIES.values())


def family_named(name: str) -> Family:
    """A registered family by its name (a preset's `family`)."""
    if name not in _FAMILIES:
        raise UserError(f"model family {name!r} is not registered; known: {', '.join(_FAMILIES)}")
    return _FAMILIES[name]


def family_of(x) -> Family:
    """The family of a model_type string, a config (object or config.json dict), a model directory, or a model
    (peft-wrapped models included). An unregistered model_type gets the fallback family (see the module doc)."""
    model_type = _model_type(x)
    return _BY_MODEL_TYPE.get(model_type) or _fallback(model_type)


def is_causal_lm(config_or_model_type) -> bool:
    """A decoder that runs as a causal LM — not an encoder with an optional LM head (BERT's BertLMHeadModel)."""
    return family_of(config_or_model_type).decoder


def saved_classifier_class(architectures: list[str] | None):
    """The class that rebuilds one saved classifier: a family's own pooled head when `architectures` names
    it (models/pooling.py), else AutoModelForSequenceClassification. (Ensembles: models/load.py.)"""
    arch = architectures[0] if architectures else None
    for fam in _FAMILIES.values():
        if fam.concat_pool_class and arch == fam.concat_pool_class.rpartition(":")[2]:
            return fam.concat_pool_cls()
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def new_classifier(config):
    """A freshly initialised single classifier of the architecture `config` records."""
    from transformers import AutoModelForSequenceClassification

    cls = saved_classifier_class(getattr(config, "architectures", None))
    return cls.from_config(config) if cls is AutoModelForSequenceClassification else cls(config)


# --------------------------------------------------------------------------- resolution


def _unwrap(model):
    """A peft model's underlying transformers model; any other model as it is."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def backbone(model):
    """transformers' `base_model` (the module under the task head); a model without one is its own backbone."""
    model = _unwrap(model)
    return getattr(model, "base_model", model)


def _attr(obj, dotted: str):
    return reduce(lambda o, name: getattr(o, name, None) if o is not None else None, dotted.split("."), obj)


def _model_type(x) -> str:
    if isinstance(x, Family):
        return x.model_types[0]
    if isinstance(x, str):
        return x
    if isinstance(x, os.PathLike):
        p = Path(x) / "config.json"
        if not p.is_file():
            raise UserError(f"{x}: not a model directory (no config.json)")
        return json.loads(p.read_text(encoding="utf-8")).get("model_type", "")
    if isinstance(x, dict):
        return x.get("model_type", "")
    config = getattr(_unwrap(x), "config", x)
    return getattr(config, "model_type", "") or ""


def _import(ref: str | None, family: Family, what: str):
    if ref is None:
        raise UserError(f"model family {family.name!r} has no {what} class"
                        + ("" if family.registered else f"; register a family for model_type {family.model_types[0]!r}"))
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _auto_is_causal_lm(model_type: str) -> bool:
    """transformers' answer: in the causal-LM auto mapping and not the masked-LM one (which BERT is in too)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _fallback(model_type: str) -> Family:
    return Family(
        name=model_type or "unknown", model_types=(model_type,), decoder=_auto_is_causal_lm(model_type),
        blocks=CONVENTIONAL_BLOCKS, embeddings=CONVENTIONAL_EMBEDDINGS, heads=("score", "classifier", "lm_head"),
        lora_targets=None, dropout_fields=("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout"),
        registered=False,
    )


# --------------------------------------------------------------------------- the families


def _decoder(name: str, cls: str, **kw) -> Family:
    """A Llama-shaped decoder: backbone.layers / embed_tokens, score or lm_head on top, q/v LoRA."""
    m = f"transformers:{cls}"
    defaults = dict(
        name=name, model_types=(name,), decoder=True, blocks=("layers",), embeddings=("embed_tokens",),
        heads=("score", "lm_head"), lora_targets=("q_proj", "v_proj"), config_class=f"{m}Config",
        causal_lm_class=f"{m}ForCausalLM", classifier_class=f"{m}ForSequenceClassification",
        dropout_fields=("attention_dropout",),
    )
    return Family(**{**defaults, **kw})


LLAMA_BPE = BpeFraming((("pad_token", "<pad>"), ("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>")),
                       first="<s>", last="</s>")
BERT_BPE = BpeFraming((("pad_token", "[PAD]"), ("unk_token", "[UNK]"), ("cls_token", "[CLS]"), ("sep_token", "[SEP]"),
                       ("mask_token", "[MASK]")), first="[CLS]", last="[SEP]")

register_family(_decoder("llama", "Llama", preset_defaults={"rms_norm_eps": 1e-5}, prune_layout="llama", bpe=LLAMA_BPE,
                         concat_pool_class="trainforge.models.pooling:LlamaForConcatPoolClassification"))
register_family(Family(
    name="bert", model_types=("bert",), decoder=False, blocks=("encoder.layer",), embeddings=("embeddings",),
    heads=("classifier", "cls"), lora_targets=("query", "value"), config_class="transformers:BertConfig",
    classifier_class="transformers:BertForSequenceClassification",
    dropout_fields=("hidden_dropout_prob", "attention_probs_dropout_prob"), prune_layout="bert", bpe=BERT_BPE,
))
register_family(_decoder("mistral", "Mistral", prune_layout="llama"))
register_family(_decoder("qwen2", "Qwen2", prune_layout="llama"))
register_family(Family(
    name="gpt2", model_types=("gpt2",), decoder=True, blocks=("h",), embeddings=("wte", "wpe"), heads=("score", "lm_head"),
    lora_targets=("c_attn",), config_class="transformers:GPT2Config", causal_lm_class="transformers:GPT2LMHeadModel",
    classifier_class="transformers:GPT2ForSequenceClassification", dropout_fields=("resid_pdrop", "embd_pdrop", "attn_pdrop"),
))
# Mixture-of-experts decoders: the blocks are the decoder layers; each layer's experts live inside its mlp
# (fused 3-D weights in transformers 5, a ModuleList per layer in 4.x) and are never "the blocks". LoRA stays
# on the attention projections; the experts' fused weights are parameters, not Linear layers peft could wrap.
register_family(_decoder("mixtral", "Mixtral", moe=MoeLayout("mlp.gate", "mlp.experts", "router_logits", "num_local_experts")))
register_family(_decoder("qwen2_moe", "Qwen2Moe", moe=MoeLayout("mlp.gate", "mlp.experts", "router_logits", "num_experts")))
# DeepSeek-V3's multi-head latent attention: queries come from q_b_proj (q_proj when q_lora_rank is null), keys
# and values from kv_b_proj — the per-head up-projections, the analogue of Llama's q_proj/v_proj.
register_family(_decoder("deepseek_v3", "DeepseekV3", lora_targets=("q_proj", "q_b_proj", "kv_b_proj"),
                         moe=MoeLayout("mlp.gate", "mlp.experts", "bias", "n_routed_experts")))

# Image and image–text families (tasks/image_classification.py, tasks/clip.py; presets built by vision/models.py).
# ViT's blocks are `layers` in transformers 5 (`encoder.layer` before); its attention projections q_proj/v_proj
# (query/value before). The conv nets' LoRA targets are their 1×1 convolutions (peft adapts Conv2d); their
# depthwise 3×3 convolutions (groups = channels) are left alone. MobileNetV2 is built with tf_padding=False:
# its TF-style padding reads conv.stride, which a peft-wrapped convolution does not have.
register_family(Family(
    name="vit", model_types=("vit",), decoder=False, blocks=("layers", "encoder.layer"), embeddings=("embeddings",),
    heads=("classifier",), lora_targets=("q_proj", "v_proj", "query", "value"), config_class="transformers:ViTConfig",
    classifier_class="transformers:ViTForImageClassification",
    dropout_fields=("hidden_dropout_prob", "attention_probs_dropout_prob"), modality="image",
))
register_family(Family(
    name="mobilenet_v2", model_types=("mobilenet_v2",), decoder=False, blocks=("layer",), embeddings=("conv_stem",),
    heads=("classifier",), lora_targets=("expand_1x1.convolution", "reduce_1x1.convolution"),
    config_class="transformers:MobileNetV2Config", classifier_class="transformers:MobileNetV2ForImageClassification",
    dropout_fields=("classifier_dropout_prob",), preset_defaults={"tf_padding": False}, modality="image",
    int8_dynamic=False,
))
register_family(Family(
    name="efficientnet", model_types=("efficientnet",), decoder=False, blocks=("encoder.blocks",), embeddings=("embeddings",),
    heads=("classifier",), lora_targets=("expand_conv", "project_conv"), config_class="transformers:EfficientNetConfig",
    classifier_class="transformers:EfficientNetForImageClassification", dropout_fields=("dropout_rate",),
    modality="image", int8_dynamic=False,
))
# Audio (tasks/audio_classification.py; built by audio/models.py from the log-mel shape): the Audio Spectrogram
# Transformer, ViT blocks over 16 × 16 patches of the log-mel spectrogram; q/v projections for LoRA.
register_family(Family(
    name="ast", model_types=("audio-spectrogram-transformer",), decoder=False, blocks=("layers", "encoder.layer"),
    embeddings=("embeddings",), heads=("classifier",), lora_targets=("q_proj", "v_proj", "query", "value"),
    config_class="transformers:ASTConfig", classifier_class="transformers:ASTForAudioClassification",
    dropout_fields=("hidden_dropout_prob", "attention_probs_dropout_prob"), modality="audio",
))
# CLIP's text tower pools the first eos; transformers takes eos_token_id == 2 to mean "a legacy config: pool the
# highest id", so a fresh BPE puts eos at id 3. Chinese-CLIP's text tower is BERT and pools [CLS].
CLIP_BPE = BpeFraming((("pad_token", "<pad>"), ("unk_token", "<unk>"), ("bos_token", "<|startoftext|>"),
                       ("eos_token", "<|endoftext|>")), first="<|startoftext|>", last="<|endoftext|>")
# CLIP: two towers. "The blocks" are the vision tower's (freeze trains its top N and everything above it —
# the text tower counts as head); LoRA adapts both towers' q/v projections (same names in each).
register_family(Family(
    name="clip", model_types=("clip",), decoder=False, blocks=("vision_model.encoder.layers",),
    embeddings=("vision_model.embeddings",), heads=("visual_projection", "text_projection"),
    lora_targets=("q_proj", "v_proj"), config_class="transformers:CLIPConfig", dropout_fields=(), modality="image-text",
    bpe=CLIP_BPE,
))
register_family(Family(
    name="chinese_clip", model_types=("chinese_clip",), decoder=False, blocks=("vision_model.encoder.layers",),
    embeddings=("vision_model.embeddings",), heads=("visual_projection", "text_projection"),
    lora_targets=("q_proj", "v_proj", "query", "value"), config_class="transformers:ChineseCLIPConfig", dropout_fields=(),
    modality="image-text", bpe=BERT_BPE,
))
