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
