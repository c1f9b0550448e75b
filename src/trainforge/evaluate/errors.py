"""Error analysis: where the model fails, with examples a person can read.

- most_confused_pairs: the largest off-diagonal cells of the confusion matrix, each with examples
- slice_metrics: accuracy / macro F1 per length bucket, source, label and any configured field,
  with the baseline's accuracy on the same slice beside it
- error_records: every wrong prediction, most confident first (what errors.jsonl holds)
"""

from __future__ import annotations

import numpy as np

from trainforge.errors import UserError
from trainforge.evaluate.metrics import confusion_matrix, summary_from_confusion


def most_confused_pairs(cm: np.ndarray, labels: list[str], y_true: np.ndarray, probs: np.ndarray,
                        rows: list[dict], top: int = 5, examples: int = 3) -> list[dict]:
    """Off-diagonal cells by count (largest first), each with its most confident examples."""
    y_pred = probs.argmax(1)
    conf = probs.max(1)
    cells = [(int(cm[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and cm[i, j] > 0]
    out = []
    for count, i, j in sorted(cells, key=lambda c: (-c[0], c[1], c[2]))[:top]:
        idx = np.flatnonzero((y_true == i) & (y_pred == j))
        idx = idx[np.argsort(-conf[idx], kind="stable")][:examples]
        out.append({
            "true": labels[i], "predicted": labels[j], "count": count,
            "share_of_true_class": round(count / max(1, int(cm[i].sum())), 5),
            "examples": [{"id": rows[k]["id"], "text": rows[k]["text"][:300], "confidence": round(float(conf[k]), 5)} for k in idx],
        })
    return out


def length_bucket(n_chars: int, edges: list[int]) -> str:
    lo = 0
    for hi in edges:
        if n_chars <= hi:
            return f"{lo + 1}-{hi}"
        lo = hi
    return f">{lo}"


def slice_values(rows: list[dict], fields: list[str], edges: list[int], source_file: str) -> dict[str, list[str]]:
    """{field: value per row} for length_bucket, source, label and the configured fields."""
    out = {"length_bucket": [length_bucket(len(r["text"]), edges) for r in rows]}
    for field in ["source", "label", *fields]:
        if field in out:
            continue
        missing = [i for i, r in enumerate(rows) if field not in r]
        if missing and field in fields:
            raise UserError(
                f"eval.slice_fields names '{field}', but record {missing[0] + 1} of {source_file} (id "
                f"{rows[missing[0]].get('id')!r}) has no such field; fields there: {', '.join(sorted(rows[missing[0]]))}"
            )
        if missing:  # source is optional in hand-made data: skip the slice rather than fail
            continue
        out[field] = [str(r[field]) for r in rows]
    return out


def slice_metrics(values: dict[str, list[str]], y_true: np.ndarray, y_pred: np.ndarray, k: int,
                  base_pred: np.ndarray | None, min_n: int = 5) -> list[dict]:
    """Metrics per (field, value) with at least `min_n` examples, worst model accuracy first within a field."""
    out = []
    for field, vals in values.items():
        vals_arr = np.array(vals)
        group = []
        for value in sorted(set(vals)):
            sel = vals_arr == value
            n = int(sel.sum())
            if n < min_n:
                continue
            s = summary_from_confusion(confusion_matrix(y_true[sel], y_pred[sel], k))
            # a slice holding one true class (every label slice) has no meaningful macro F1: its accuracy is
            # that class's recall, and the F1 of the classes it never holds would drag the mean to ~half
            one_class = len(set(y_true[sel].tolist())) == 1
            rec = {"field": field, "value": value, "n": n, "model_accuracy": round(s["accuracy"], 5),
                   "model_macro_f1": None if one_class else round(s["macro_f1"], 5)}
            if base_pred is not None:
                rec["baseline_accuracy"] = round(float((base_pred[sel] == y_true[sel]).mean()), 5)
                rec["model_beats_baseline"] = rec["model_accuracy"] > rec["baseline_accuracy"]
            group.append(rec)
        if field == "length_bucket":  # keep buckets in length order, they read as a trend
            group.sort(key=lambda r: _bucket_order(r["value"]))
        else:
            group.sort(key=lambda r: r["model_accuracy"])
        out += group
    return out


def _bucket_order(value: str) -> int:
    return int(value[1:]) + 1 if value.startswith(">") else int(value.split("-")[0])


def error_records(rows: list[dict], labels: list[str], y_true: np.ndarray, probs: np.ndarray,
                  base_pred: np.ndarray | None, values: dict[str, list[str]]) -> list[dict]:
    """Every wrong prediction, most confident first: what to read before anything else."""
    y_pred = probs.argmax(1)
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-probs.max(1)[wrong], kind="stable")]
    out = []
    for i in wrong:
        rec = {
            "id": rows[i]["id"], "text": rows[i]["text"], "label": labels[y_true[i]], "pred": labels[y_pred[i]],
            "confidence": round(float(probs[i].max()), 5), "prob_of_label": round(float(probs[i, y_true[i]]), 5),
            "slices": {f: v[i] for f, v in values.items()},
        }
        if base_pred is not None:
            rec["baseline_pred"] = labels[base_pred[i]]
        out.append(rec)
    return out
