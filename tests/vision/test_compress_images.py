"""compress on image classifiers: dynamic INT8 and magnitude pruning of a ViT are built, scored, timed and gated;
a conv net's INT8 is refused with the reason (its work is in Conv2d layers, which dynamic INT8 leaves alone)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from trainforge.compress.config import CompressConfig
from trainforge.data.io import write_jsonl
from trainforge.errors import UserError
from trainforge.models.presets import resolve_model
from trainforge.tasks import ModelSpec, write_model_info
from trainforge.tasks.image_classification import ImageClassificationTask
from trainforge.train.config import TrainConfig
from trainforge.vision.compress import compress_image_classifier, load_image_variant

TINY = {"vit-tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=4),
        "mobilenet-v2-tiny": dict(depth_multiplier=0.25)}


def _run(tmp_path, preset, rows):
    cfg = TrainConfig(task="image_classification", model=preset, image={"size": 16})
    task = ImageClassificationTask.for_training(cfg, rows)
    processor = task.make_processor(cfg, resolve_model(preset), rows)
    torch.manual_seed(0)
    spec = ModelSpec(preset, 0, 0.0, overrides=TINY[preset])
    model = task.build_model(spec, processor)
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "test.jsonl", rows[:40])
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    write_model_info(tmp_path / "model", task.model_info(spec, model, "full", adapter=False))
    return task


def _ctx(tmp_path, **kw):
    section = CompressConfig(latency_batches=1, onnx=False, gates={"max_metric_drop": 0.05, "min_speedup_b32": None}, **kw)
    return SimpleNamespace(section=section, path=lambda *p: tmp_path.joinpath(*p), run_dir=tmp_path,
                           config=SimpleNamespace(seed=0, device="cpu"))


def test_vit_int8_and_pruning_are_built_measured_and_gated(tmp_path, digit_rows):
    task = _run(tmp_path, "vit-tiny", digit_rows)
    flat = compress_image_classifier(task, _ctx(tmp_path, int8=True, int8_kernel="fbgemm", magnitude_sparsity=0.5))
    gates = {g["name"]: g for g in json.loads((tmp_path / "compress" / "gates.json").read_text())}
    assert set(gates) == {"int8_dynamic", "magnitude_pruned"}
    measured = json.loads((tmp_path / "compress" / "measurements.json").read_text())
    assert all(v["speedup_b1"] > 0 and v["speedup_b32"] > 0 for v in measured["variants"])
    int8 = load_image_variant(tmp_path / "compress" / "int8_dynamic")
    assert any("quantized" in type(m).__module__ for m in int8.modules())  # Linear layers are torch's dynamic INT8
    assert flat["variants"] == 2 and abs(gates["int8_dynamic"]["metric_drop"]) <= 0.1
    from trainforge.compress.report import compression

    assert "int8_dynamic" in compression(tmp_path)  # the run report reads the same files as for text


def test_conv_net_int8_is_refused_with_a_reason(tmp_path, digit_rows):
    task = _run(tmp_path, "mobilenet-v2-tiny", digit_rows)
    with pytest.raises(UserError, match="conv net"):
        compress_image_classifier(task, _ctx(tmp_path, int8=True))
    refused = json.loads((tmp_path / "compress" / "refused.json").read_text())
    assert "Conv2d" in refused["int8_dynamic"]
