"""A paired significance test for two classifiers scored on the same examples: McNemar's exact test.

Only the examples where exactly one of the two is right carry information: b (model right, baseline
wrong) and c (the reverse). Under "equally accurate" each such example is a fair coin, so the two-sided
p-value is the exact binomial test of min(b, c) successes in b + c trials at 0.5 (scipy).
"""

from __future__ import annotations

import numpy as np


def mcnemar(model_correct: np.ndarray, baseline_correct: np.ndarray) -> dict:
    from scipy.stats import binomtest

    model_correct, baseline_correct = np.asarray(model_correct, bool), np.asarray(baseline_correct, bool)
    b = int((model_correct & ~baseline_correct).sum())
    c = int((~model_correct & baseline_correct).sum())
    p = 1.0 if b + c == 0 else float(binomtest(min(b, c), b + c, 0.5).pvalue)
    return {"test": "mcnemar_exact", "model_only_right": b, "baseline_only_right": c, "p_value": round(p, 6),
            "significant_at_0.05": p < 0.05}
