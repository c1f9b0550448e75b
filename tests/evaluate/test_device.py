"""Eval on the run's device: batches go to the model, logits come back as a CPU float buffer; metrics.json says where."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from trainforge.batching import Encoded, collate, eval_batches, model_device, predict_logits
from trainforge.cli import main

from .conftest import write_run


def _direct_logits(model, enc, batch_size, pad_id):
    """What predict_logits computed before it knew about devices: a CPU forward per sorted batch."""
    out = torch.empty((len(enc), model.config.num_labels))
    with torch.no_grad():
        for idx in eval_batches(enc, batch_size):
            b = collate(enc, idx, pad_id)
            out[idx] = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
    return out


def test_predict_logits_on_cpu_is_bit_for_bit_the_plain_forward(tiny):
    model, tok, rows = tiny
    enc = Encoded(tok([r["text"] for r in rows[:37]], truncation=True, max_length=64)["input_ids"], [0] * 37)
    got = predict_logits(model, enc, 8, tok.pad_token_id)
    assert got.device.type == "cpu" and got.dtype == torch.float32
    assert torch.equal(got, _direct_logits(model.eval(), enc, 8, tok.pad_token_id))
    assert model_device(model) == torch.device("cpu")


def test_metrics_json_records_the_device(tiny, tmp_path):
    run = write_run(tmp_path, "dev", tiny, n_test=12, eval_section={"attention_examples": 0,
                                                                     "adversarial": {"samples": 0, "perturbation_samples": 0}})
    cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
    (run / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "device": "cpu"}, allow_unicode=True))
    assert main(["eval", str(run)]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["device"]["device"] == "cpu" and "threads" in m["device"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_eval_on_a_missing_gpu_is_a_user_error_naming_the_key(tiny, tmp_path, capsys):
    run = write_run(tmp_path, "nogpu", tiny, n_test=12, eval_section={"attention_examples": 0,
                                                                       "adversarial": {"samples": 0, "perturbation_samples": 0}})
    cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
    (run / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "device": "cuda"}, allow_unicode=True))
    assert main(["eval", str(run)]) == 2
    assert "device: cuda" in capsys.readouterr().err


@pytest.mark.gpu
def test_predict_logits_on_a_gpu_matches_the_cpu(tiny):
    model, tok, rows = tiny
    enc = Encoded(tok([r["text"] for r in rows[:37]], truncation=True, max_length=64)["input_ids"], [0] * 37)
    want = predict_logits(model, enc, 8, tok.pad_token_id)
    import copy

    gpu_model = copy.deepcopy(model).to("cuda")
    got = predict_logits(gpu_model, enc, 8, tok.pad_token_id)
    assert got.device.type == "cpu" and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
def test_eval_runs_on_the_gpu_and_says_so(tiny, tmp_path):
    run = write_run(tmp_path, "gpu", tiny, n_test=12)
    cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
    (run / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "device": "cuda"}, allow_unicode=True))
    assert main(["eval", str(run)]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["device"]["device"].startswith("cuda") and m["device"]["name"]
    assert (run / "eval" / "adversarial.json").is_file() and list((run / "eval" / "attention").glob("*.png"))
