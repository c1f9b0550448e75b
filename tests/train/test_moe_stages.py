"""A DeepSeek-V3 MoE through the stages: pretrain (bias update + health), SFT with LoRA on the experts, a
classifier on the pretrained body, and compress (INT8 on what it can reach; structured pruning refuses)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.test_stage import NEG, NEWS, POS
from trainforge.config import validate_config
from trainforge.errors import UserError
from trainforge.run import run_pipeline

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "q_lora_rank": 16,
         "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8, "intermediate_size": 64,
         "moe_intermediate_size": 16}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("moe-runs")
    data = root / "moe" / "data"
    data.mkdir(parents=True)
    for split, n in (("train", 40), ("val", 10), ("test", 10)):
        rows = [{"id": f"{split}{i}", "text": (POS if i % 2 else NEG)[i % 5] + "。" * (i % 3),
                 "label": "positive" if i % 2 else "negative"} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (root / "news.txt").write_text("\n".join(NEWS), encoding="utf-8")
    return root


def _config(root, train: dict, **extra):
    return validate_config({
        "name": "moe", "runs_dir": str(root), "tracking": {"enabled": False},
        "pretrain": {"corpus": [{"path": str(root / "news.txt"), "label_field": None}], "model": "deepseek-tiny",
                     "config_overrides": SMALL, "tokenizer": {"vocab_size": 300, "min_frequency": 1}, "seq_len": 32, "val_share": 0.2,
                     "max_steps": 6, "batch_size": 8, "in_domain_epochs": 0, "mtp_depth": 1, "eval_every": 3, "log_every": 1000,
                     "moe": {"bias_update_gamma": 0.01, "aux_loss_alpha": 1e-3, "idle_warn_steps": 2}},
        "train": {"model": "pretrain", "max_length": 32, "max_steps": 3, "batch_size": 8, "eval_every": 3,
                  "log_every": 1000, **train},
        **extra,
    })


def test_pretrain_updates_and_saves_the_bias_and_reports_health(run_dir):
    from transformers import AutoModelForCausalLM

    from trainforge.train.report import training

    result = run_pipeline(_config(run_dir, {"task": "sft", "method": "lora", "max_length": 48, "lora": {"r": 4, "dropout": 0.0},
                                            "moe": {"lora_experts": True},
                                            "sft": {"label_names": {"positive": "正面", "negative": "负面"},
                                                    "generate_examples": 2, "max_new_tokens": 3}},
                                 eval={"split": "val", "generate_examples": 4, "bootstrap_samples": 50}))
    rd = run_dir / "moe"
    assert result.ran == ["pretrain", "train", "eval"]
    assert (rd / "eval" / "metrics.json").is_file()
    health = json.loads((rd / "pretrain" / "moe_health.json").read_text())["general"]
    assert health["layers"] == [1] and len(health["history"]) == 6 and health["bias_update_gamma"] == 0.01
    from safetensors.torch import load_file

    assert not any(k.startswith("mtp.") for k in load_file(rd / "pretrain" / "model.safetensors"))  # MTP dropped
    lm = AutoModelForCausalLM.from_pretrained(rd / "pretrain")  # plain transformers, bias included
    bias = lm.model.layers[1].mlp.gate.e_score_correction_bias
    assert bias.abs().sum() > 0 and torch.allclose(bias, torch.tensor(health["final_bias"][0]), atol=1e-5)
    # SFT with LoRA on attention and the fused experts, merged into model/
    assert (rd / "model" / "moe_health.json").is_file()
    adapter = json.loads((rd / "adapter" / "adapter_config.json").read_text())
    assert "mlp.experts.gate_up_proj" in adapter["target_parameters"]
    sft = AutoModelForCausalLM.from_pretrained(rd / "model")
    assert not torch.equal(sft.model.layers[1].mlp.experts.down_proj, lm.model.layers[1].mlp.experts.down_proj)
    html = training(rd)
    assert html.count("MoE health") >= 2
    assert "max/mean (last step)" in html


def test_classifier_on_the_moe_body_then_int8_and_a_pruning_refusal(run_dir):
    from trainforge.compress.load import load_variant, read_meta
    from trainforge.compress.prune import block_views

    result = run_pipeline(_config(run_dir, {"method": "full"},
                                  compress={"int8": True, "weight_only_int8": False, "onnx": False, "latency_batches": 2,
                                            "gates": {"max_metric_drop": 1.0, "min_speedup_b32": 0.0}}))
    assert "compress" in result.ran
    rd = run_dir / "moe"
    meta = read_meta(rd / "compress" / "int8_dynamic")
    left = meta["not_quantized"]
    assert {"gate_up_proj", "down_proj", "gate.weight"} <= set(left["names"]) and 0 < left["share"] < 1
    variant = load_variant(rd / "compress" / "int8_dynamic")
    assert variant.model.layers[1].mlp.experts.gate_up_proj.dtype == torch.float32
    with pytest.raises(UserError, match="mixture-of-experts"):
        block_views(variant)
