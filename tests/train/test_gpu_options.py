"""What GPU users expect from LLaMA-Factory / axolotl / torchtune: the attention kernel, a chunked cross-entropy
through the training loop, QLoRA and the paged 8-bit optimizer. On a CPU: the defaults change nothing, the
equivalent choices give the same numbers, and the GPU-only ones are refused with the key and what to install.
The `gpu` tests run where torch sees CUDA (and skip, saying why, elsewhere)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from trainforge.config import validate_config
from trainforge.errors import UserError
from trainforge.models import presets
from trainforge.models.presets import (
    PRESETS,
    check_flash_attention,
    check_optimizer,
    check_quantization,
    use_attention,
)
from trainforge.train.config import LoopConfig, TrainConfig


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                        num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64))


def test_defaults_are_todays_behaviour():
    cfg = TrainConfig()
    assert (cfg.attn_implementation, cfg.chunked_ce, cfg.optimizer, cfg.lora.quantize) == ("auto", None, "adamw", None)
    model = tiny_llama()
    before = model.config._attn_implementation
    assert use_attention(model, "auto") is model and model.config._attn_implementation == before


def test_eager_and_sdpa_give_the_same_loss():
    ids = torch.randint(1, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    losses = {}
    for kernel in ("eager", "sdpa"):
        model = use_attention(tiny_llama(), kernel)
        assert model.config._attn_implementation == kernel
        losses[kernel] = float(model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.detach())
    assert losses["eager"] == pytest.approx(losses["sdpa"], abs=1e-5)


def test_flash_attention_refused_without_cuda_or_package(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="train.attn_implementation=flash_attention_2 needs a CUDA GPU"):
        check_flash_attention("train.attn_implementation")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pretrain.attn_implementation=flash_attention_2 needs the flash_attn package: `pip install flash-attn"):
        check_flash_attention("pretrain.attn_implementation")


def test_quantize_refusals(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="lora.quantize=4bit is for method lora with task sft"):
        validate_config({"name": "x", "train": {"task": "sft", "method": "full", "lora": {"quantize": "4bit"}}})
    with pytest.raises(UserError, match="lora.quantize=8bit is for method lora with task sft"):
        validate_config({"name": "x", "train": {"method": "lora", "lora": {"quantize": "8bit"}}})
    with pytest.raises(UserError, match="lora.quantize needs train.model to be a saved model directory"):
        check_quantization("4bit", PRESETS["llama-tiny"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="train.lora.quantize=4bit needs a CUDA GPU"):
        check_quantization("4bit", tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="needs the bitsandbytes package: `pip install bitsandbytes`"):
        check_quantization("8bit", tmp_path)
    check_quantization(None, PRESETS["llama-tiny"])  # off: nothing to check


def test_paged_optimizer_refused_without_cuda_or_package(monkeypatch):
    check_optimizer("adamw")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="train.optimizer=paged_adamw_8bit needs a CUDA GPU"):
        check_optimizer("paged_adamw_8bit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pretrain.optimizer=paged_adamw_8bit needs the bitsandbytes package"):
        check_optimizer("paged_adamw_8bit", "pretrain.optimizer")


def test_qlora_stage_refuses_a_preset_before_any_work(tmp_path, monkeypatch):
    from trainforge.run import run_pipeline

    data = tmp_path / "q" / "data"
    data.mkdir(parents=True)
    for split in ("train", "val"):
        (data / f"{split}.jsonl").write_text(json.dumps({"id": "a", "text": "good", "label": "pos"}) + "\n")
    cfg = validate_config({"name": "q", "runs_dir": str(tmp_path), "tracking": {"enabled": False},
                           "train": {"task": "sft", "method": "lora", "model": "llama-tiny", "lora": {"quantize": "4bit"}}})
    with pytest.raises(UserError, match="saved model directory"):
        run_pipeline(cfg, only=("train",))
    assert not (tmp_path / "q" / "tokenizer").exists()


def test_sft_fit_with_chunked_ce_follows_the_same_losses():
    """Through the whole loop (accumulation, clipping, AdamW): the chunked loss trains the same model."""
    from trainforge.models.tokenizer import train_bpe
    from trainforge.tasks import ModelSpec, SFTTask
    from trainforge.tasks.info import PromptFormat
    from trainforge.train.loop import fit

    rows = [{"id": str(i), "text": f"item {i % 7} was {'great' if i % 2 else 'awful'}", "label": "pos" if i % 2 else "neg"}
            for i in range(32)]
    fmt = PromptFormat(template="Sentiment of: {text}", label_names={"pos": "positive", "neg": "negative"})
    tok = train_bpe([r["text"] for r in rows] + ["positive negative Sentiment of:"], 300, 1, 64, family="llama")
    cfg = LoopConfig(epochs=1, max_steps=6, batch_size=8, grad_accum=2, lr=3e-3, eval_every=6, log_every=1,
                     schedule={"warmup_ratio": 0.0})
    curves = {}
    for chunk in (None, 5):
        task = SFTTask(fmt, max_length=64, sample_count=0, chunked_ce=chunk)
        task.prepare_tokenizer(tok)
        enc = task.encode(rows, tok)
        torch.manual_seed(0)
        model = task.build_model(ModelSpec("llama-tiny", 64, 0.0, overrides=dict(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=32)), tok)
        result = fit(model, enc, enc, cfg, tok.pad_token_id, 0, task=task)
        curves[chunk] = [h["loss"] for h in result.history] + [result.best["val_loss"]]
    assert curves[5] == pytest.approx(curves[None], abs=2e-4)


@pytest.mark.gpu
def test_flash_attention_2_matches_sdpa_on_gpu():
    pytest.importorskip("flash_attn", reason="pip install flash-attn")
    ids = torch.randint(1, 64, (2, 32), device="cuda")
    out = {}
    for kernel in ("sdpa", "flash_attention_2"):
        model = use_attention(tiny_llama().to("cuda", torch.bfloat16), kernel)
        out[kernel] = float(model(input_ids=ids, labels=ids).loss)
    assert out["flash_attention_2"] == pytest.approx(out["sdpa"], abs=2e-2)


@pytest.mark.gpu
def test_qlora_4bit_trains_a_saved_model(tmp_path):
    pytest.importorskip("bitsandbytes", reason="pip install bitsandbytes")
    import peft

    from trainforge.tasks.causal_lm import token_loss
    from trainforge.train.loop import Weights
    from trainforge.train.methods import apply_method

    tiny_llama().save_pretrained(tmp_path / "base")
    model = presets.load_quantized_causal_lm(tmp_path / "base", "4bit", torch.device("cuda", 0))
    assert getattr(model, "is_loaded_in_4bit", False)
    cfg = TrainConfig(task="sft", method="lora", model=str(tmp_path / "base"), lora={"quantize": "4bit"})
    setup = apply_method(model, cfg, 10)
    assert isinstance(setup.model, peft.PeftModel)
    ids = torch.randint(1, 64, (2, 16), device="cuda")
    loss = token_loss(setup.model, {"input_ids": ids, "labels": ids}, Weights(1.0, 30.0), chunked_ce=8)
    loss.backward()
    assert all(p.grad is not None for _, p in setup.groups[0][0])
