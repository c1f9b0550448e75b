"""`models recommend`: every row in the table is within every budget, ranked by latency; a measurement is real."""

from __future__ import annotations

from trainforge.models.recommend import Measured, measure, within_budget


def _row(name, params, mb, ms):
    return Measured(name, {}, "vit", params, mb, ms, "cpu")


def test_the_table_respects_every_budget_and_ranks_by_latency():
    rows = [_row("a", 1_000, 50, 9.0), _row("b", 5_000, 40, 2.0), _row("c", 2_000, 400, 1.0), _row("d", 900, 30, 30.0)]
    ranked = within_budget(rows, max_params=4_000, max_latency_ms=20.0, max_memory_mb=100)
    assert [r.preset for r in ranked] == ["a"]
    assert all(r.params <= 4_000 and r.latency_ms <= 20 and r.peak_memory_mb <= 100 for r in ranked)
    broken = {r.preset: r.over_budget for r in rows}
    assert broken["b"] == ["params 5,000 > 4,000"] and broken["c"] == ["memory 400 MB > 100 MB"]
    assert broken["d"] == ["latency 30.0 ms > 20.0 ms"]
    assert [r.preset for r in within_budget(rows, None, None, None)] == ["c", "b", "a", "d"]


def test_a_candidate_is_measured_in_a_child_process():
    from trainforge.vision.models import build_image_classifier

    shape = dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=32)
    row = measure("image_classification", "vit-tiny", shape, size=16, batch=2, repeats=2)
    expected = sum(p.numel() for p in build_image_classifier("vit-tiny", [str(i) for i in range(10)], 16, 0.0,
                                                             **shape).parameters())
    assert row.family == "vit" and row.params == expected and row.latency_ms > 0 and row.peak_memory_mb >= 0
