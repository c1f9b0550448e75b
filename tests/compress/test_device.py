"""Where compress measures: INT8 on the CPU beside a CPU original, float variants on the run's device."""

from __future__ import annotations

import json

import pytest
import torch

from trainforge.cli import main
from trainforge.compress.measure import round_robin_latency
from trainforge.compress.stage import measured_on

from .conftest import tiny_bert


def test_int8_variants_are_measured_on_the_cpu_whatever_the_device():
    gpu = torch.device("cuda", 0)
    assert measured_on({"format": "int8", "runtime": "dynamic"}, gpu).type == "cpu"
    assert measured_on({"format": "int8", "runtime": "weight_only"}, gpu).type == "cpu"
    assert measured_on({"format": "hf"}, gpu) == gpu
    assert measured_on({"format": "hf-structured"}, torch.device("cpu")).type == "cpu"


def test_round_robin_refuses_models_on_two_devices():
    cpu_model = tiny_bert()
    with torch.device("meta"):
        meta_model = tiny_bert()
    with pytest.raises(ValueError, match="one device"):
        round_robin_latency({"a": cpu_model, "b": meta_model}, [{"input_ids": torch.ones((1, 4), dtype=torch.long)}])


def test_a_cpu_run_writes_no_device_notes(tiny_run):
    assert main(["compress", str(tiny_run), "--int8", "--set", "device=cpu", "--set", "compress.gates.min_speedup_b32=null",
                 "--set", "compress.latency_batches=2", "--set", "compress.onnx=false"]) == 0
    measured = json.loads((tiny_run / "compress" / "measurements.json").read_text())
    assert measured["device"]["device"] == "cpu"
    assert {v["device"] for v in measured["variants"]} == {"cpu"}
    assert not any("note" in v for v in measured["variants"])
    assert [v["name"] for v in measured["variants"]] == ["original", "int8_dynamic"]


@pytest.mark.gpu
def test_a_gpu_run_measures_int8_on_cpu_and_says_so(tiny_run):
    assert main(["compress", str(tiny_run), "--int8", "--magnitude", "0.5", "--set", "device=cuda",
                 "--set", "compress.gates.min_speedup_b32=null", "--set", "compress.gates.max_metric_drop=1.0",
                 "--set", "compress.latency_batches=2", "--set", "compress.onnx=false"]) == 0
    out = tiny_run / "compress"
    gates = {g["name"]: g for g in json.loads((out / "gates.json").read_text())}
    assert gates["int8_dynamic"]["device"] == "cpu" and "CPU kernel" in gates["int8_dynamic"]["note"]
    assert "device" not in gates["magnitude_pruned"]
    variants = {v["name"]: v for v in json.loads((out / "measurements.json").read_text())["variants"]}
    assert variants["original"]["device"].startswith("cuda") and variants["magnitude_pruned"]["device"].startswith("cuda")
    assert variants["original_cpu"]["device"] == "cpu" and variants["int8_dynamic"]["device"] == "cpu"
    # the int8 speedup is against the CPU original, never against the GPU one
    cpu_ref = variants["original_cpu"]["p50_b32_ms"]
    assert variants["int8_dynamic"]["speedup_b32"] == pytest.approx(cpu_ref / variants["int8_dynamic"]["p50_b32_ms"], rel=1e-2)
