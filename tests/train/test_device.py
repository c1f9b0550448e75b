"""The loop on a device: refusing a GPU that is not there, fp32 masters for a half-precision checkpoint,
the memory limit from the device, gradient checkpointing; CUDA-only checks behind @pytest.mark.gpu."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.train.conftest import PAD, make_classification, make_lm
from trainforge.errors import UserError
from trainforge.train.config import LoopConfig
from trainforge.train.loop import fit


def _cfg(**kw) -> LoopConfig:
    base = dict(max_steps=4, batch_size=8, lr=1e-2, eval_every=1000, log_every=1000, schedule={"warmup_ratio": 0.0})
    base.update(kw)
    return LoopConfig(**base)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_fails_at_startup(llama_classifier):
    before = {n: p.detach().clone() for n, p in llama_classifier.named_parameters()}
    with pytest.raises(UserError, match=r"device: cuda — this machine has no usable CUDA device.*set device: cpu or auto"):
        fit(llama_classifier, make_classification(), None, _cfg(), PAD, seed=0, device="cuda")
    assert all(torch.equal(before[n], p) for n, p in llama_classifier.named_parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_config_device_cuda_fails_at_startup_of_the_train_stage(tiny_config):
    from trainforge.config import load_config
    from trainforge.run import run_pipeline

    cfg = load_config(tiny_config, overrides=["device=cuda"])
    with pytest.raises(UserError, match=r"device: cuda"):
        run_pipeline(cfg)  # data runs on the CPU; train stops before it builds a tokenizer or model


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_half_precision_checkpoint_trains_with_fp32_masters(llama_classifier, half, precision):
    """A model loaded as fp16/bf16 (dtype auto): the trainable weights are upcast before the optimizer is
    built, so AdamW's small updates are not rounded away, and the run equals the fp32 model's from the same
    (half-rounded) start."""
    rounded = llama_classifier.to(half).float()  # the values a half checkpoint holds, in fp32
    loaded = copy.deepcopy(rounded).to(half)
    data = make_classification()
    fit(rounded, data, None, _cfg(precision=precision), PAD, seed=0)
    result = fit(loaded, data, None, _cfg(precision=precision), PAD, seed=0)
    assert result.nonfinite_skipped == 0
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for (n, a), (_, b) in zip(rounded.named_parameters(), loaded.named_parameters()):
        assert torch.equal(a, b), n


def test_a_frozen_half_base_stays_half(llama_classifier):
    model = llama_classifier.to(torch.bfloat16)
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith("score"))
    fit(model, make_classification(), None, _cfg(precision="bf16"), PAD, seed=0)
    assert model.score.weight.dtype == torch.float32
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16


def test_small_free_device_memory_lowers_the_micro_batch(llama_classifier, monkeypatch):
    from trainforge import device as devices

    asked = []
    monkeypatch.setattr(devices, "available_memory", lambda d: asked.append(d) or 100_000)
    result = fit(llama_classifier, make_classification(), None, _cfg(max_steps=2, batch_size=16), PAD, seed=0)
    assert asked == [torch.device("cpu")]
    assert result.micro_batch < 16 and result.micro_batch * result.grad_accum == 16


def test_memory_estimate_counts_shards_checkpointing_and_the_snapshot(llama_lm):
    from trainforge.train.memory import estimate

    n = sum(p.numel() for p in llama_lm.parameters())
    one = estimate(llama_lm, 4, 64, "fp32", True)
    sharded = estimate(llama_lm, 4, 64, "fp32", True, shards=2)
    assert (sharded.weights, sharded.gradients, sharded.optimizer) == (2 * n, 2 * n, 4 * n)
    assert estimate(llama_lm, 4, 64, "fp32", True, checkpointing=True).activations < one.activations
    assert estimate(llama_lm, 4, 64, "bf16", True).weights == 6 * n  # fp32 masters + autocast's half copies
    on_gpu = estimate(llama_lm, 4, 64, "fp32", True, snapshot=True, on_cpu=False)
    assert on_gpu.snapshot == 4 * n and on_gpu.total == one.total  # host memory, not the device's
    assert estimate(llama_lm, 4, 64, "fp32", True, snapshot=True).total == one.total + 4 * n


def test_gradient_checkpointing_trains_the_same_weights(llama_lm):
    other = copy.deepcopy(llama_lm)
    data = make_lm()
    fit(llama_lm, data, None, _cfg(), PAD, seed=0)
    fit(other, data, None, _cfg(gradient_checkpointing=True), PAD, seed=0)
    assert other.is_gradient_checkpointing
    for (n, a), (_, b) in zip(llama_lm.named_parameters(), other.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_gradient_checkpointing_on_a_model_without_it_names_the_key():
    model = torch.nn.Sequential(torch.nn.Embedding(40, 8))
    with pytest.raises(UserError, match=r"train.gradient_checkpointing: Sequential does not support"):
        fit(model, make_classification(), None, _cfg(gradient_checkpointing=True), PAD, seed=0)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fit_on_cuda_moves_model_and_batches_and_keeps_the_best_on_the_cpu(llama_lm, precision):
    data = make_lm()
    result = fit(llama_lm, data, data, _cfg(max_steps=15, precision=precision, eval_every=5), PAD, seed=0, device="cuda")
    assert next(llama_lm.parameters()).device.type == "cuda"
    assert result.nonfinite_skipped == 0 and result.history[-1]["loss"] < result.history[0]["loss"]
    assert all(isinstance(v, float) for e in result.evals for k, v in e.items() if k != "step")


@pytest.mark.gpu
def test_fp16_checkpoint_trains_with_grad_scaler_on_cuda(llama_classifier):
    model = llama_classifier.to(torch.float16)
    result = fit(model, make_classification(), None, _cfg(precision="fp16"), PAD, seed=0, device="cuda")
    assert result.nonfinite_skipped == 0 and all(p.dtype == torch.float32 for p in model.parameters())


def test_native_precision_is_bf16_only_where_the_cpu_has_bf16_units(monkeypatch):
    import torch

    from trainforge import device as devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: "AVX512-BF16")
    assert devices.resolve_precision("native", cpu) == "bf16"
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: None)  # AVX2: bf16 would be emulated, slower than fp32
    assert devices.resolve_precision("native", cpu) == "fp32"
    assert devices.resolve_precision("auto", cpu) == "fp32"  # auto keeps CPUs in fp32 whatever they have


def test_cpu_bf16_units_reads_the_flags_of_this_machine():
    from trainforge import device as devices

    flags = open("/proc/cpuinfo").read()
    want = "AMX-BF16" if "amx_bf16" in flags else ("AVX512-BF16" if "avx512_bf16" in flags else None)
    assert devices.cpu_bf16_units() == want
