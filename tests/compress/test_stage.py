"""The command end to end on a tiny run: the files it writes, gates that fail, no candidate then."""

from __future__ import annotations

import json

import pytest

from trainforge.cli import main


def test_compress_command_writes_variants_gates_and_candidate(tiny_run):
    rc = main(["compress", str(tiny_run), "--int8", "--magnitude", "0.5",
               "--set", "compress.gates.min_speedup_b32=null", "--set", "compress.gates.max_metric_drop=1.0",
               "--set", "compress.latency_batches=2", "--set", "compress.onnx=false"])
    assert rc == 0
    out = tiny_run / "compress"
    gates = json.loads((out / "gates.json").read_text())
    assert [g["name"] for g in gates] == ["int8_dynamic", "magnitude_pruned"]
    for g in gates:
        assert set(g) == {"name", "passed", "metric", "metric_drop", "speedup_b32", "speedup_b1",
                          "slower_at", "size_mb", "reasons", "verdict"}
        assert g["passed"] and g["reasons"] == []
    assert (out / "int8_dynamic" / "model.int8.safetensors").is_file()
    assert (out / "magnitude_pruned" / "model.safetensors").is_file()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))  # no pickle anywhere
    measured = json.loads((out / "measurements.json").read_text())
    by_name = {v["name"]: v for v in measured["variants"]}
    assert set(by_name) == {"original", "int8_dynamic", "magnitude_pruned"}
    assert by_name["magnitude_pruned"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert by_name["int8_dynamic"]["linear_mb"] < 0.3 * by_name["original"]["linear_mb"]
    for v in measured["variants"]:
        assert v["p50_b1_ms"] > 0 and v["p95_b32_ms"] >= v["p50_b32_ms"] > 0
    candidate = json.loads((out / "candidate.json").read_text())
    assert candidate["name"] in {"int8_dynamic", "magnitude_pruned"}
    assert candidate["path"] == f"compress/{candidate['name']}"
    assert "Compression" in (tiny_run / "report.html").read_text()


def test_variant_over_budget_fails_and_nothing_is_chosen(tiny_run):
    rc = main(["compress", str(tiny_run), "--int8", "--set", "compress.gates.max_size_mb=0.001",
               "--set", "compress.latency_batches=2", "--set", "compress.onnx=false"])
    assert rc == 0
    gates = json.loads((tiny_run / "compress" / "gates.json").read_text())
    assert gates[0]["passed"] is False
    assert any(r.startswith("size_mb") for r in gates[0]["reasons"])
    candidate = json.loads((tiny_run / "compress" / "candidate.json").read_text())
    assert candidate["name"] is None and candidate["path"] is None


def test_llama_classifier_gets_both_int8_variants_and_onnx(tiny_llama_run):
    """weight_only_int8 'auto' turns on for decoders; ONNX export and parity work for Llama too."""
    rc = main(["compress", str(tiny_llama_run), "--set", "compress.latency_batches=2",
               "--set", "compress.gates.min_speedup_b32=null", "--set", "compress.gates.max_metric_drop=1.0"])
    assert rc == 0
    out = tiny_llama_run / "compress"
    assert [g["name"] for g in json.loads((out / "gates.json").read_text())] == ["int8_dynamic", "int8_weight_only"]
    parity = json.loads((out / "onnx" / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_diff"] < 1e-4
    assert "ONNX" in (tiny_llama_run / "report.html").read_text()


def test_bad_flag_value_is_a_user_error_naming_the_key(tiny_run, capsys):
    assert main(["compress", str(tiny_run), "--prune", "1.5"]) == 2
    assert "compress.structured.fraction" in capsys.readouterr().err


def test_not_a_run_dir_is_a_user_error(tmp_path, capsys):
    assert main(["compress", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
