"""The paired verdict against the baseline: McNemar's exact test as statsmodels and scipy compute it, and a
paired bootstrap CI of the accuracy difference that agrees with scipy's."""

from __future__ import annotations

import numpy as np
import pytest

from trainforge.evaluate.paired import bootstrap_difference_ci, mcnemar_exact, paired_comparison


def _constructed(a: int, b: int, c: int, d: int, seed: int = 0):
    """y, model, baseline with a both-right, b only-model-right, c only-baseline-right, d both-wrong, shuffled."""
    y = np.zeros(a + b + c + d, dtype=int)
    model = np.concatenate([np.zeros(a + b), np.ones(c + d)]).astype(int)
    base = np.concatenate([np.zeros(a), np.ones(b), np.zeros(c), np.ones(d)]).astype(int)
    order = np.random.default_rng(seed).permutation(len(y))
    return y[order], model[order], base[order]


@pytest.mark.parametrize("b,c", [(108, 74), (74, 108), (5, 0), (0, 0), (12, 12), (300, 260)])
def test_mcnemar_matches_statsmodels_and_scipy(b, c):
    pytest.importorskip("statsmodels", reason="pip install 'trainforge[dev]' for the statsmodels parity test")
    from scipy.stats import binomtest
    from statsmodels.stats.contingency_tables import mcnemar

    ours = mcnemar_exact(b, c)
    assert ours == pytest.approx(mcnemar([[900, b], [c, 40]], exact=True).pvalue, rel=1e-12, abs=1e-15)
    if b + c:
        assert ours == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)


def test_the_demo_case_is_significant_at_five_percent():
    y, model, base = _constructed(1000, 108, 74, 150)
    r = paired_comparison(y, model, base, n_boot=2000, seed=0)
    assert (r["only_model_right"], r["only_baseline_right"], r["both_right"], r["both_wrong"]) == (108, 74, 1000, 150)
    assert r["mcnemar_p"] == pytest.approx(0.0143, abs=5e-4) and r["significant"] and r["verdict"] == "better"
    assert r["accuracy_difference"] == pytest.approx(34 / 1332, abs=1e-5)
    lo, hi = r["ci95"]
    assert lo < r["accuracy_difference"] < hi and lo > 0


def test_bootstrap_ci_agrees_with_scipy():
    from scipy.stats import bootstrap

    y, model, base = _constructed(600, 60, 40, 100, seed=3)
    mc, bc = (model == y).astype(float), (base == y).astype(float)
    ours = bootstrap_difference_ci(mc, bc, n_boot=20000, seed=1)
    ref = bootstrap((mc, bc), lambda m, b, axis=-1: m.mean(axis) - b.mean(axis), paired=True, vectorized=True,
                    n_resamples=20000, method="percentile", confidence_level=0.95, random_state=np.random.default_rng(2))
    assert ours[0] == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert ours[1] == pytest.approx(ref.confidence_interval.high, abs=0.004)


def test_no_difference_is_not_a_win():
    y, model, base = _constructed(100, 10, 10, 5)
    r = paired_comparison(y, model, base, n_boot=500)
    assert r["mcnemar_p"] == 1.0 and not r["significant"] and r["verdict"] == "no significant difference"
