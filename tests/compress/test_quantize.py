"""INT8: outputs close to float, the stored form reloads bit-for-bit, plain HF loading refuses it."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from tests.compress.conftest import batch_of, tiny_bert, tiny_llama, token_data
from trainforge.compress.load import INT8_WEIGHTS, load_variant, save_variant
from trainforge.compress.measure import fastest_kernel
from trainforge.compress.quantize import (Int8WeightOnlyLinear, available_kernels, linear_weight_bytes, quantize_weight,
                                          to_dynamic_int8, to_weight_only_int8)


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_quantize_weight_roundtrip_error_is_below_half_a_step():
    w = torch.randn(16, 32)
    codes, scale = quantize_weight(w)
    assert codes.dtype == torch.int8 and codes.abs().max() <= 127
    assert torch.all((codes.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-7)


@pytest.mark.parametrize("build", [tiny_bert, tiny_llama])
def test_int8_outputs_agree_with_float(build):
    model, batch = build(), batch_of(token_data(16))
    ref = logits(model, batch)
    weight_only = to_weight_only_int8(model)
    dynamic = to_dynamic_int8(weight_only)
    spread = ref.abs().max()
    # weight-only keeps float activations: error is the weight rounding only
    assert (logits(weight_only, batch) - ref).abs().max() < 0.02 * spread + 1e-3
    assert (logits(dynamic, batch) - ref).abs().max() < 0.05 * spread + 5e-3
    assert not any(isinstance(m, torch.nn.Linear) for m in dynamic.modules())


def test_dynamic_matches_torch_quantize_dynamic():
    """Our packing of the stored codes gives what torch's own quantize_dynamic(per-channel) gives."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model, batch = tiny_bert(), batch_of(token_data(16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    ours = to_dynamic_int8(to_weight_only_int8(model))
    assert torch.allclose(logits(ours, batch), logits(theirs, batch), atol=2e-3)


@pytest.mark.parametrize("runtime", ["dynamic", "weight_only"])
def test_int8_save_and_reload_without_pickle(tmp_path, tiny_run, runtime):
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_run / "model").eval()
    tok = AutoTokenizer.from_pretrained(tiny_run / "model")
    stored = to_weight_only_int8(model)
    out = save_variant(stored, tmp_path / runtime, tok, {"format": "int8", "runtime": runtime})
    with safe_open(out / INT8_WEIGHTS, "pt") as f:
        assert f.get_tensor("bert.encoder.layer.0.attention.self.query.weight").dtype == torch.int8
        assert f.get_tensor("bert.encoder.layer.0.attention.self.query.weight_scale").dtype == torch.float32
    reloaded = load_variant(out)
    batch = batch_of(token_data(8, seed=1))
    expected = logits(to_dynamic_int8(stored) if runtime == "dynamic" else stored, batch)
    assert torch.equal(logits(reloaded, batch), expected)
    with pytest.raises(OSError):  # no model.safetensors: a plain loader cannot mistake codes for floats
        AutoModelForSequenceClassification.from_pretrained(out)


def test_linear_weights_shrink_about_four_times():
    model = tiny_bert()
    before, after = linear_weight_bytes(model), linear_weight_bytes(to_weight_only_int8(model))
    assert after < 0.3 * before
    assert sum(isinstance(m, Int8WeightOnlyLinear) for m in to_weight_only_int8(model).modules()) == 2 * 6 + 2


@pytest.mark.parametrize("kernel", available_kernels())
def test_every_int8_kernel_agrees_with_float(kernel):
    model = tiny_llama()
    batch = batch_of(token_data(8, seed=2))
    assert torch.allclose(logits(to_dynamic_int8(to_weight_only_int8(model), kernel), batch), logits(model, batch), atol=0.05)


def test_auto_kernel_is_timed_recorded_and_honoured_on_load(tmp_path, tiny_run, monkeypatch, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainforge.compress import load as load_module

    model = AutoModelForSequenceClassification.from_pretrained(tiny_run / "model").eval()
    stored = to_weight_only_int8(model)
    batches = [batch_of(token_data(32, seed=s), 32) for s in range(2)]
    engine_before = torch.backends.quantized.engine
    kernel, ms = fastest_kernel(stored, [{k: b[k] for k in ("input_ids", "attention_mask")} for b in batches], threads=1)
    assert set(ms) == set(available_kernels()) and kernel == min(ms, key=ms.get)
    assert torch.backends.quantized.engine == engine_before  # packing for a kernel leaves torch's engine as it was
    tok = AutoTokenizer.from_pretrained(tiny_run / "model")
    out = save_variant(stored, tmp_path / "v", tok, {"format": "int8", "runtime": "dynamic", "kernel": "not-in-this-build"})
    batch = batch_of(token_data(8, seed=1))
    reloaded = load_variant(out)  # an unknown kernel falls back to the default, and says so
    assert "not-in-this-build" in capsys.readouterr().err
    assert torch.allclose(logits(reloaded, batch), logits(to_dynamic_int8(stored), batch), atol=1e-4)
    monkeypatch.setattr(load_module, "usable_kernel", lambda k, d: (seen.append(k), k)[1])
    seen: list = []
    load_variant(save_variant(stored, tmp_path / "w", tok, {"format": "int8", "runtime": "dynamic", "kernel": kernel}))
    assert seen == [kernel]
