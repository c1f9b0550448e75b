"""Is the model really better than the baseline on this split? A paired test on the same examples.

Both models answer every example, so the comparison is paired:

                    baseline right   baseline wrong
    model right          a                b        b: only the model is right
    model wrong          c                d        c: only the baseline is right

McNemar's exact test: under "equally good", each of the b + c discordant examples is a fair coin,
so p = min(1, 2 · P(Binomial(b + c, 1/2) ≤ min(b, c))) — what statsmodels' `mcnemar(exact=True)`
computes (scipy's binomtest, two-sided, gives the same for p = 1/2).

The accuracy difference (b − c) / n gets a paired bootstrap 95% CI: each resample draws the same
example indices for both models (percentile interval), like trainforge.evaluate.diff.
"""

from __future__ import annotations

import numpy as np


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts."""
    from scipy.stats import binom

    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def bootstrap_difference_ci(model_correct: np.ndarray, baseline_correct: np.ndarray, n_boot: int = 1000,
                            seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of mean(model_correct) − mean(baseline_correct), resampling examples jointly."""
    diff = np.asarray(model_correct, float) - np.asarray(baseline_correct, float)
    n = len(diff)
    if n == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # 256 resamples at a time: (256, n) indices stay small
        k = min(256, n_boot - start)
        means[start:start + k] = diff[rng.integers(0, n, size=(k, n))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_comparison(y_true, model_pred, baseline_pred, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """The paired verdict that goes into eval/metrics.json as "paired"."""
    y, m, b = (np.asarray(x) for x in (y_true, model_pred, baseline_pred))
    mc, bc = m == y, b == y
    only_model, only_baseline = int((mc & ~bc).sum()), int((~mc & bc).sum())
    p = mcnemar_exact(only_model, only_baseline)
    lo, hi = bootstrap_difference_ci(mc, bc, n_boot, seed)
    diff = float(mc.mean() - bc.mean()) if len(y) else 0.0
    return {
        "n": int(len(y)), "accuracy_difference": round(diff, 5), "ci95": [round(lo, 5), round(hi, 5)],
        "only_model_right": only_model, "only_baseline_right": only_baseline,
        "both_right": int((mc & bc).sum()), "both_wrong": int((~mc & ~bc).sum()),
        "mcnemar_p": float(f"{p:.4g}"), "test": "McNemar exact (binomial), two-sided", "bootstrap_samples": n_boot,
        "alpha": alpha, "significant": bool(p < alpha),
        "verdict": ("better" if diff > 0 else "worse") if p < alpha else "no significant difference",
    }
