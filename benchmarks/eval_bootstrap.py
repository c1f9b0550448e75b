"""Paired bootstrap of accuracy and macro F1 (what `trainforge eval --against` runs): our NumPy
metrics against calling scikit-learn per resample, the obvious way to write it. Same resample
indices, same numbers (checked), side by side in one process; prints the ratio.

    .venv/bin/python benchmarks/eval_bootstrap.py [--n 1736] [--boot 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from trainforge.evaluate.diff import _batch_metrics  # noqa: E402


def sklearn_bootstrap(y, pred, idx):
    from sklearn.metrics import accuracy_score, f1_score

    acc = np.array([accuracy_score(y[r], pred[r]) for r in idx])
    f1 = np.array([f1_score(y[r], pred[r], average="macro", zero_division=0) for r in idx])
    return {"accuracy": acc, "macro_f1": f1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1736, help="examples (the quickstart test split has 1,736)")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, args.n)
    pred = np.where(rng.random(args.n) < 0.85, y, rng.integers(0, args.classes, args.n))
    idx = rng.integers(0, args.n, size=(args.boot, args.n))

    t0 = time.perf_counter()
    ours = _batch_metrics(y, pred, idx, args.classes)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = sklearn_bootstrap(y, pred, idx)
    t_ref = time.perf_counter() - t0
    for k in ours:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-12)
    print(f"{args.boot} paired resamples of {args.n:,} examples, {args.classes} classes (identical numbers)")
    print(f"  scikit-learn per resample : {t_ref:7.3f} s")
    print(f"  trainforge (NumPy)        : {t_ours:7.3f} s   {t_ref / t_ours:5.1f}x faster")


if __name__ == "__main__":
    main()
