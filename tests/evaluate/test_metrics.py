"""Our NumPy metrics against scikit-learn on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from trainforge.evaluate.metrics import (
    auc_roc,
    calibration_bins,
    classification_metrics,
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    prf_from_confusion,
    summary_from_confusion,
)


def _case(seed: int, n: int, k: int, drop_pred_class: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y] * rng.random((n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = probs.argmax(1)
    if drop_pred_class:  # a class the model never predicts: precision 0, not NaN
        pred[pred == k - 1] = 0
    return y, pred, probs


@pytest.mark.parametrize("seed,n,k,drop", [(0, 200, 2, False), (1, 500, 3, False), (2, 300, 5, True), (3, 17, 4, False)])
def test_classification_parity_with_sklearn(seed, n, k, drop):
    y, pred, _ = _case(seed, n, k, drop)
    cm = confusion_matrix(y, pred, k)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=range(k)))
    s = summary_from_confusion(cm)
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert s["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert s["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert s["macro_precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert s["macro_recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    p, r, f, support = prf_from_confusion(cm)
    sp, sr, sf, ss = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    np.testing.assert_allclose(p, sp)
    np.testing.assert_allclose(r, sr)
    np.testing.assert_allclose(f, sf)
    np.testing.assert_array_equal(support, ss)


def test_string_label_metrics_match_sklearn():
    y = ["pos", "neg", "neg", "mid", "pos", "pos"]
    p = ["pos", "pos", "neg", "neg", "pos", "mid"]
    ours = classification_metrics(y, p)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-5)
    assert ours["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"), abs=1e-5)


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (2, 6)])
def test_auc_parity_binary_and_one_vs_rest(seed, k):
    y, _, probs = _case(seed, 400, k)
    expected = skm.roc_auc_score(y, probs[:, 1]) if k == 2 else skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert auc_roc(y, probs) == pytest.approx(expected)


def test_auc_handles_ties_like_sklearn():
    y = np.array([0, 1, 0, 1, 1, 0, 1])
    score = np.array([0.2, 0.2, 0.5, 0.5, 0.9, 0.1, 0.5])
    probs = np.stack([1 - score, score], 1)
    assert auc_roc(y, probs) == pytest.approx(skm.roc_auc_score(y, score))


def test_auc_is_nan_with_one_class_and_json_null_in_report():
    y = np.zeros(5, dtype=int)
    probs = np.tile([0.7, 0.3], (5, 1))
    assert np.isnan(auc_roc(y, probs))
    summary, _ = classification_report(y, probs, ["a", "b"])
    assert summary["auc_roc"] is None


def test_ece_matches_calibration_curve_bins():
    y, _, probs = _case(4, 1000, 3)
    n_bins = 15
    conf, correct = probs.max(1), (probs.argmax(1) == y).astype(int)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=n_bins, strategy="uniform")
    counts = np.histogram(conf, bins=np.linspace(0, 1, n_bins + 1))[0]
    counts = counts[counts > 0]
    expected = float(np.sum(counts / len(y) * np.abs(prob_true - prob_pred)))
    assert expected_calibration_error(y, probs, n_bins) == pytest.approx(expected)
    bins = calibration_bins(y, probs, n_bins)
    assert sum(b["n"] for b in bins) == len(y)


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model():
    # 80% confident and right 80% of the time: ECE 0; 100% confident and right half the time: ECE 0.5
    y = np.array([0, 0, 0, 0, 1])
    probs = np.tile([0.8, 0.2], (5, 1))
    assert expected_calibration_error(y, probs) == pytest.approx(0.0)
    y2 = np.array([0, 1])
    assert expected_calibration_error(y2, np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(0.5)
