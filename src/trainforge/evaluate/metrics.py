"""Classification metrics, computed by scikit-learn so they match what everyone else reports."""

from __future__ import annotations


def classification_metrics(y_true: list[str], y_pred: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 5),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 5),
        "micro_f1": round(float(f1_score(y_true, y_pred, average="micro")), 5),
    }
