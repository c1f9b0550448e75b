"""Classification metrics on integer arrays, in NumPy.

Why not call scikit-learn every time: the regression diff bootstraps every metric 1,000 times,
and sklearn's per-call input validation costs more than the arithmetic. So the metrics are
written once here, from the confusion matrix, and tests/evaluate/test_metrics.py holds them to
scikit-learn's numbers on the same inputs (accuracy, macro/micro F1, per-class P/R/F1, AUC-ROC
binary and one-vs-rest, the calibration bins behind ECE).

Conventions: labels are indices 0..K-1 into a label list; `probs` is (N, K) and rows sum to 1.
A class that is never predicted has precision 0 (sklearn's zero_division=0), not NaN.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    return np.bincount(k * np.asarray(y_true) + np.asarray(y_pred), minlength=k * k).reshape(k, k)


def prf_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support (each shape (K,))."""
    tp = np.diag(cm).astype(float)
    predicted, support = cm.sum(0).astype(float), cm.sum(1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1, support


def summary_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """accuracy, macro/micro F1, macro precision/recall. Macro averages over classes seen in
    y_true or y_pred (what sklearn does when `labels` is not given)."""
    precision, recall, f1, support = prf_from_confusion(cm)
    present = (support > 0) | (cm.sum(0) > 0)
    n = cm.sum()
    acc = float(np.trace(cm) / n) if n else 0.0
    return {
        "accuracy": acc,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        # single-label: micro P = micro R = micro F1 = accuracy
        "micro_f1": acc,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
    }


def binary_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve as the Mann–Whitney U statistic: the chance a random positive
    scores above a random negative (ties count half). NaN when one class is absent."""
    from scipy.stats import rankdata

    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)  # average ranks for ties
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_roc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUC of class 1's probability. K > 2: one-vs-rest macro average over the classes
    present in y_true (sklearn's multi_class="ovr", average="macro")."""
    y_true = np.asarray(y_true)
    k = probs.shape[1]
    if k == 2:
        return binary_auc(y_true == 1, probs[:, 1])
    per_class = [binary_auc(y_true == c, probs[:, c]) for c in range(k) if 0 < (y_true == c).sum() < len(y_true)]
    return float(np.mean(per_class)) if per_class else float("nan")


def calibration_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Equal-width bins over the top-class confidence: [{lo, hi, n, confidence, accuracy}].
    Bin b holds confidences in [b/M, (b+1)/M) (the last bin also takes 1.0)."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == np.asarray(y_true)).astype(float)
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        out.append({
            "lo": b / n_bins, "hi": (b + 1) / n_bins, "n": n,
            "confidence": float(conf[sel].mean()) if n else None,
            "accuracy": float(correct[sel].mean()) if n else None,
        })
    return out


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum over bins of |bin| / N * |accuracy(bin) - confidence(bin)|."""
    n = len(y_true)
    bins = calibration_bins(y_true, probs, n_bins)
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"])) if n else 0.0


def classification_report(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> tuple[dict, dict]:
    """(summary, per_class) for predictions argmax(probs). Summary values are rounded floats,
    the keys of metrics.json's "model"/"baseline" objects."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(1)
    cm = confusion_matrix(y_true, y_pred, len(labels))
    summary = summary_from_confusion(cm)
    summary["auc_roc"] = auc_roc(y_true, probs)
    summary["ece"] = expected_calibration_error(y_true, probs)
    precision, recall, f1, support = prf_from_confusion(cm)
    per_class = {
        lab: {"precision": round(float(precision[i]), 5), "recall": round(float(recall[i]), 5),
              "f1": round(float(f1[i]), 5), "support": int(support[i])}
        for i, lab in enumerate(labels)
    }
    # NaN (AUC with one class absent) becomes null: metrics.json stays strict JSON
    return {k: (round(v, 5) if v == v else None) for k, v in summary.items()}, per_class


def classification_metrics(y_true: list[str], y_pred: list[str]) -> dict[str, float]:
    """accuracy, macro_f1, micro_f1 from string labels (kept for callers outside eval)."""
    labels = sorted(set(y_true) | set(y_pred))
    index = {lab: i for i, lab in enumerate(labels)}
    cm = confusion_matrix(np.array([index[t] for t in y_true]), np.array([index[p] for p in y_pred]), len(labels))
    s = summary_from_confusion(cm)
    return {k: round(s[k], 5) for k in ("accuracy", "macro_f1", "micro_f1")}
