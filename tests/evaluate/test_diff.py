"""The regression diff finds exactly the planted flips and puts a CI around each delta."""

from __future__ import annotations

import json

import pytest

from trainforge.errors import UserError
from trainforge.evaluate.diff import format_diff, regression_diff


def _write_preds(run, preds):
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))


def test_diff_finds_planted_flips(tmp_path):
    n = 400
    labels = ["neg", "pos"]
    truth = [labels[i % 2] for i in range(n)]
    other = [t if i % 10 else labels[1 - i % 2] for i, t in enumerate(truth)]  # wrong on every 10th
    this = list(other)
    fixed = [i for i in range(0, n, 10)][:25]  # this run fixes 25 of them
    broken = [3, 7, 11, 13, 17]  # and breaks 5 that the other got right
    for i in fixed:
        this[i] = truth[i]
    for i in broken:
        this[i] = labels[1 - labels.index(truth[i])]
    _write_preds(tmp_path / "a", [{"id": f"e{i}", "label": truth[i], "pred": this[i]} for i in range(n)])
    _write_preds(tmp_path / "b", [{"id": f"e{i}", "label": truth[i], "pred": other[i]} for i in range(n)])
    d = regression_diff(tmp_path / "a", tmp_path / "b", n_boot=500, seed=0)
    assert sorted(d["fixed_ids"]) == sorted(f"e{i}" for i in fixed)
    assert sorted(d["broken_ids"]) == sorted(f"e{i}" for i in broken)
    acc = d["metrics"]["accuracy"]
    assert acc["delta"] == pytest.approx((25 - 5) / n)
    assert acc["ci95"][0] < acc["delta"] < acc["ci95"][1]
    assert acc["significant"]  # +20 net fixes on 400 is clear of noise
    text = format_diff(d)
    assert "25 fixed" in text and "5 broken" in text


def test_identical_runs_have_zero_delta_and_no_significance(tmp_path):
    preds = [{"id": f"e{i}", "label": "a", "pred": "a" if i % 3 else "b"} for i in range(90)]
    _write_preds(tmp_path / "a", preds)
    _write_preds(tmp_path / "b", preds)
    d = regression_diff(tmp_path / "a", tmp_path / "b", n_boot=200)
    assert d["metrics"]["accuracy"]["delta"] == 0 and not d["metrics"]["accuracy"]["significant"]
    assert d["fixed"] == d["broken"] == 0


def test_diff_needs_predictions(tmp_path):
    _write_preds(tmp_path / "a", [{"id": "x", "label": "a", "pred": "a"}])
    with pytest.raises(UserError, match="trainforge eval"):
        regression_diff(tmp_path / "a", tmp_path / "missing")
