"""Regression diff between two evaluated runs: metric deltas with paired bootstrap CIs, and flips.

Both runs' eval/predictions.jsonl are joined on example id (the examples both scored). The
bootstrap is paired: each resample draws the same example indices for both runs, so the
interval is about the *difference* and shrinks when the runs agree on most examples. A delta
whose 95% interval excludes 0 is flagged as significant.

    fixed   examples the other run got wrong and this run gets right
    broken  examples the other run got right and this run gets wrong
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainforge.data.io import read_jsonl
from trainforge.errors import UserError
from trainforge.evaluate.metrics import confusion_matrix, prf_from_confusion


def _load(run: Path) -> dict[str, dict]:
    p = run / "eval" / "predictions.jsonl"
    if not p.is_file():
        raise UserError(f"{p} not found: run `trainforge eval {run}` first")
    return {r["id"]: r for r in read_jsonl(p)}


def _batch_metrics(y: np.ndarray, pred: np.ndarray, idx: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Accuracy and macro F1 for each row of resample indices idx (B, N)."""
    acc = (pred[idx] == y[idx]).mean(1)
    f1 = np.empty(len(idx))
    for b, rows in enumerate(idx):
        cm = confusion_matrix(y[rows], pred[rows], k)
        _, _, per_class, support = prf_from_confusion(cm)
        present = (support > 0) | (cm.sum(0) > 0)
        f1[b] = per_class[present].mean()
    return {"accuracy": acc, "macro_f1": f1}


def regression_diff(run: Path, other: Path, n_boot: int = 1000, seed: int = 0, examples: int = 10) -> dict:
    this, that = _load(run), _load(other)
    ids = sorted(set(this) & set(that))
    if not ids:
        raise UserError(f"{run} and {other} share no example ids in eval/predictions.jsonl: were they evaluated on the same split?")
    labels = sorted({this[i]["label"] for i in ids} | {this[i]["pred"] for i in ids} | {that[i]["pred"] for i in ids})
    ix = {lab: j for j, lab in enumerate(labels)}
    y = np.array([ix[this[i]["label"]] for i in ids])
    a = np.array([ix[this[i]["pred"]] for i in ids])  # this run
    b = np.array([ix[that[i]["pred"]] for i in ids])  # the run compared against
    full = np.arange(len(ids))[None, :]
    point_a, point_b = _batch_metrics(y, a, full, len(labels)), _batch_metrics(y, b, full, len(labels))
    resamples = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    boot_a, boot_b = _batch_metrics(y, a, resamples, len(labels)), _batch_metrics(y, b, resamples, len(labels))
    metrics = {}
    for name in point_a:
        delta = boot_a[name] - boot_b[name]
        lo, hi = np.percentile(delta, [2.5, 97.5])
        metrics[name] = {
            "this": round(float(point_a[name][0]), 5), "other": round(float(point_b[name][0]), 5),
            "delta": round(float(point_a[name][0] - point_b[name][0]), 5),
            "ci95": [round(float(lo), 5), round(float(hi), 5)], "significant": bool(lo > 0 or hi < 0),
        }
    fixed = [i for i, t, p, q in zip(ids, y, a, b) if p == t and q != t]
    broken = [i for i, t, p, q in zip(ids, y, a, b) if p != t and q == t]

    def show(i: str) -> dict:
        return {"id": i, "label": this[i]["label"], "this": this[i]["pred"], "other": that[i]["pred"]}

    return {
        "this": str(run), "other": str(other), "n_shared": len(ids),
        "only_in_this": len(set(this) - set(that)), "only_in_other": len(set(that) - set(this)),
        "bootstrap_samples": n_boot, "metrics": metrics,
        "fixed": len(fixed), "broken": len(broken),
        "fixed_examples": [show(i) for i in fixed[:examples]], "broken_examples": [show(i) for i in broken[:examples]],
        "fixed_ids": fixed, "broken_ids": broken,
    }


def format_diff(d: dict, texts: dict[str, str] | None = None) -> str:
    lines = [f"regression diff: {d['this']}  vs  {d['other']}  ({d['n_shared']:,} shared examples, "
             f"{d['bootstrap_samples']} paired bootstrap resamples)"]
    for name, m in d["metrics"].items():
        flag = "significant" if m["significant"] else "within noise"
        lines.append(f"  {name:<10} {m['this']:.4f} vs {m['other']:.4f}   delta {m['delta']:+.4f}   "
                     f"95% CI [{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}]   {flag}")
    lines.append(f"  flipped: {d['fixed']} fixed (other wrong → this right), {d['broken']} broken (other right → this wrong)")
    for kind in ("broken", "fixed"):
        for e in d[f"{kind}_examples"][:5]:
            text = (texts or {}).get(e["id"], "")[:60]
            lines.append(f"    {kind:<6} {e['id']}  label {e['label']}: other {e['other']} → this {e['this']}  {text}")
    return "\n".join(lines)
