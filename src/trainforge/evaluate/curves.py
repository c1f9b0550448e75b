"""ROC and precision-recall curves of the model beside the baseline's (scikit-learn's curves).

Two classes: the curves of the positive class (the label named "positive", else the second label).
More classes: micro-averaged one-vs-rest (every (example, class) pair is one binary decision).
Each curve is thinned to at most MAX_POINTS points (evenly over its thresholds), so curves.json stays
small on a large split; the AUC and average precision are computed on the full curve.
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 200


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int))
    return [np.round(a[keep], 5).tolist() for a in arrays]


def binary_target(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """(is_positive, score, what) of the decision the curves describe."""
    if len(labels) == 2:
        pos = labels.index("positive") if "positive" in labels else 1
        return (y_true == pos).astype(int), probs[:, pos], f"class {labels[pos]}"
    onehot = np.eye(len(labels), dtype=int)[y_true]
    return onehot.ravel(), probs.ravel(), "micro-average over classes (one-vs-rest)"


def curves_of(is_pos: np.ndarray, score: np.ndarray) -> dict:
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(is_pos, score)
    precision, recall, _ = precision_recall_curve(is_pos, score)
    roc = _thin(fpr, tpr)
    pr = _thin(recall[::-1], precision[::-1])  # recall rising, as it is drawn
    return {"roc": {"fpr": roc[0], "tpr": roc[1], "auc": round(float(auc(fpr, tpr)), 5)},
            "pr": {"recall": pr[0], "precision": pr[1], "average_precision": round(float(average_precision_score(is_pos, score)), 5),
                   "prevalence": round(float(is_pos.mean()), 5)}}


def roc_pr_curves(y_true: np.ndarray, probs: np.ndarray, base_probs: np.ndarray | None, labels: list[str]) -> dict:
    """{"of": what, "model": {roc, pr}, "baseline": {roc, pr}}; {} when the split holds one class only."""
    is_pos, score, what = binary_target(np.asarray(y_true), np.asarray(probs), labels)
    if is_pos.min() == is_pos.max():
        return {}
    out = {"of": what, "model": curves_of(is_pos, score)}
    if base_probs is not None:
        out["baseline"] = curves_of(is_pos, binary_target(np.asarray(y_true), np.asarray(base_probs), labels)[1])
    return out
