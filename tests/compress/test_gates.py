"""Gates: a variant over any budget fails with a reason and is never the candidate."""

from __future__ import annotations

from trainforge.compress.config import GatesConfig
from trainforge.compress.gates import choose_candidate, judge

GATES = GatesConfig(max_metric_drop=0.01, min_speedup_b32=1.5, max_size_mb=3.0)


def test_each_budget_fails_with_its_reason():
    r = judge("slow_big_bad", metric=0.80, original_metric=0.85, speedup_b32=1.1, size_mb=4.0, gates=GATES)
    assert not r.passed
    assert [x.split()[0] for x in r.reasons] == ["metric_drop", "speedup_b32", "size_mb"]
    assert r.metric_drop == 0.05


def test_within_budget_passes_and_drop_can_be_negative():
    r = judge("ok", metric=0.86, original_metric=0.85, speedup_b32=2.0, size_mb=1.0, gates=GATES)
    assert r.passed and r.reasons == [] and r.metric_drop == -0.01


def test_failing_variant_is_never_chosen_even_if_fastest():
    fast_but_broken = judge("fast", 0.70, 0.85, 5.0, 1.0, GATES)
    modest = judge("modest", 0.845, 0.85, 1.6, 1.0, GATES)
    faster_ok = judge("faster", 0.845, 0.85, 1.9, 2.0, GATES)
    assert choose_candidate([fast_but_broken, modest, faster_ok]).name == "faster"
    assert choose_candidate([fast_but_broken]) is None


def test_null_budgets_are_not_checked():
    gates = GatesConfig(max_metric_drop=0.02, min_speedup_b32=None, max_size_mb=None)
    assert judge("x", 0.84, 0.85, 0.5, 100.0, gates).passed


def test_a_variant_slower_at_batch_1_is_named_in_the_verdict():
    """The demo's INT8: 2.29x at batch 32, 0.76x at batch 1 (7.3 vs 5.5 ms) — passing, but never silently."""
    r = judge("int8_dynamic", 0.861, 0.862, speedup_b32=2.29, size_mb=1.0, gates=GATES, speedup_b1=5.5 / 7.3)
    assert r.passed and r.slower_at == [1]
    assert r.verdict == "pass — slower than the original at batch 1"
    both = judge("pruned", 0.86, 0.862, speedup_b32=0.9, size_mb=1.0, gates=GatesConfig(min_speedup_b32=None), speedup_b1=0.8)
    assert both.passed and both.slower_at == [1, 32] and both.verdict.endswith("at batch 1 and 32")
    assert judge("fast", 0.86, 0.862, 2.0, 1.0, GATES, speedup_b1=1.3).slower_at == []


def test_batch_1_gate_fails_a_variant_that_is_slower_one_request_at_a_time():
    gates = GatesConfig(max_metric_drop=0.01, min_speedup_b32=1.5, min_speedup_b1=1.0)
    r = judge("int8_dynamic", 0.861, 0.862, speedup_b32=2.29, size_mb=1.0, gates=gates, speedup_b1=0.76)
    assert not r.passed and r.reasons == ["speedup_b1 0.76x < min_speedup_b1 1.0x"]
    assert r.verdict.startswith("fail: speedup_b1") and r.verdict.endswith("slower than the original at batch 1")
    assert choose_candidate([r]) is None


def test_report_names_the_batch_where_the_candidate_is_slower(tmp_path):
    """The compression section and the summary, from constructed gates/measurements/candidate files."""
    import json
    from dataclasses import asdict

    from trainforge.compress.report import compression
    from trainforge.report.sections import _candidate_card

    r = judge("int8_dynamic", 0.861, 0.862, speedup_b32=2.29, size_mb=1.0, gates=GATES, speedup_b1=5.5 / 7.3)
    out = tmp_path / "compress"
    out.mkdir()
    common = {"p95_b1_ms": 8.0, "p50_b32_ms": 40.0, "p95_b32_ms": 45.0, "throughput_b32": 800.0, "size_mb": 2.0,
              "linear_mb": 1.5, "params": 1000}
    (out / "gates.json").write_text(json.dumps([asdict(r) | {"verdict": r.verdict}]))
    (out / "measurements.json").write_text(json.dumps({"metric": "accuracy", "split": "test", "threads": 1, "gates": GATES.model_dump(),
        "variants": [{"name": "original", "metrics": {"accuracy": 0.862}, "p50_b1_ms": 5.5, "speedup_b1": 1.0, "speedup_b32": 1.0, **common},
                     {"name": "int8_dynamic", "metrics": {"accuracy": 0.861}, "p50_b1_ms": 7.3, "speedup_b1": 0.753,
                      "speedup_b32": 2.29, **common}]}))
    (out / "candidate.json").write_text(json.dumps({"name": "int8_dynamic", "path": "compress/int8_dynamic",
                                                    "reason": "best passing variant", "gate": asdict(r)}))
    section = compression(tmp_path)
    assert "Slower than the original at batch 1</b>" in section and "slower at batch 1" in section
    assert "no gate at batch 1 (compress.gates.min_speedup_b1)" in section
    card = _candidate_card(tmp_path)
    assert "<span class='bad'>0.75x</span> at batch 1" in card and "Slower than the original at batch 1" in card
