"""Error analysis: a planted confusion is the top pair, slices and error records add up."""

from __future__ import annotations

import numpy as np
import pytest

from trainforge.errors import UserError
from trainforge.evaluate.errors import error_records, length_bucket, most_confused_pairs, slice_metrics, slice_values
from trainforge.evaluate.metrics import confusion_matrix

LABELS = ["sports", "politics", "finance"]


def _planted(n: int = 300, seed: int = 0):
    """A model that is right except: 40% of finance is called politics (the planted confusion)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = y.copy()
    fin = np.flatnonzero(y == 2)
    pred[fin[: int(0.4 * len(fin))]] = 1
    noise = rng.choice(np.flatnonzero(y == 0), 3, replace=False)
    pred[noise] = 2
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), pred] = 0.8
    rows = [{"id": f"r{i}", "text": "字" * (5 + 10 * (i % 30)), "label": LABELS[y[i]], "source": f"s{i % 2}", "site": "a"} for i in range(n)]
    return rows, y, probs


def test_planted_confusion_is_the_most_confused_pair():
    rows, y, probs = _planted()
    cm = confusion_matrix(y, probs.argmax(1), 3)
    pairs = most_confused_pairs(cm, LABELS, y, probs, rows, top=3)
    top = pairs[0]
    assert (top["true"], top["predicted"]) == ("finance", "politics")
    assert top["count"] == int(cm[2, 1]) and top["share_of_true_class"] == pytest.approx(cm[2, 1] / cm[2].sum(), abs=1e-4)
    assert len(top["examples"]) == 3 and all(rows[int(e["id"][1:])]["label"] == "finance" for e in top["examples"])
    assert (pairs[1]["true"], pairs[1]["predicted"], pairs[1]["count"]) == ("sports", "finance", 3)


def test_slices_cover_every_example_and_find_the_weak_label():
    rows, y, probs = _planted()
    values = slice_values(rows, ["site"], [20, 100], "test.jsonl")
    assert set(values) == {"length_bucket", "source", "label", "site"}
    slices = slice_metrics(values, y, probs.argmax(1), 3, base_pred=y)
    by_field = {}
    for s in slices:
        by_field.setdefault(s["field"], []).append(s)
    for field, group in by_field.items():
        assert sum(s["n"] for s in group) == len(rows), field
    labels = by_field["label"]
    assert labels[0]["value"] == "finance" and labels[0]["model_accuracy"] == pytest.approx(0.6, abs=0.02)
    assert all(s["model_macro_f1"] is None for s in labels)  # one true class per slice: accuracy is its recall
    assert all(s["model_macro_f1"] is not None for s in by_field["source"])
    assert all(s["baseline_accuracy"] == 1.0 for s in slices)  # the "baseline" here is the truth
    assert [s["value"] for s in by_field["length_bucket"]] == ["1-20", "21-100", ">100"]


def test_unknown_slice_field_names_the_config_key_and_record():
    rows, _, _ = _planted(10)
    with pytest.raises(UserError, match=r"eval.slice_fields names 'genre'.*record 1 of test.jsonl"):
        slice_values(rows, ["genre"], [20], "test.jsonl")


def test_error_records_most_confident_first():
    rows, y, probs = _planted()
    k = np.flatnonzero(probs.argmax(1) != y)[5]
    probs[k] = 0.01
    probs[k, (y[k] + 1) % 3] = 0.98  # one very confident error, still wrong
    values = slice_values(rows, [], [20], "t")
    errs = error_records(rows, LABELS, y, probs, None, values)
    assert len(errs) == int((probs.argmax(1) != y).sum())
    confidences = [e["confidence"] for e in errs]
    assert confidences == sorted(confidences, reverse=True) and confidences[0] == 0.98
    assert all(e["label"] != e["pred"] for e in errs)


def test_length_bucket_edges():
    assert [length_bucket(n, [20, 50]) for n in (1, 20, 21, 50, 51)] == ["1-20", "1-20", "21-50", "21-50", ">50"]
