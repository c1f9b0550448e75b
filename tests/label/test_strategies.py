"""Each query strategy picks the samples it should on a constructed pool."""

import numpy as np
import pytest
from scipy.stats import entropy

from trainforge.errors import UserError
from trainforge.label.strategies import k_center_greedy, select, uncertainty

# three labels; each row is built so that the three uncertainty strategies disagree on the top pick
PROBS = np.array([
    [0.90, 0.05, 0.05],  # 0: confident
    [0.50, 0.50, 0.00],  # 1: a dead heat between two labels     → margin's pick (p1 - p2 = 0)
    [0.45, 0.40, 0.15],  # 2: the lowest top probability          → least confidence's pick (1 - 0.45)
    [0.50, 0.25, 0.25],  # 3: mass spread over all three           → entropy's pick
    [0.80, 0.20, 0.00],  # 4
])


def test_least_confidence_margin_and_entropy_each_pick_their_row():
    assert select("least_confidence", 1, probs=PROBS) == [2]
    assert select("margin", 1, probs=PROBS) == [1]
    assert select("entropy", 1, probs=PROBS) == [3]


def test_uncertainty_scores_match_their_definitions():
    np.testing.assert_allclose(uncertainty(PROBS, "least_confidence"), 1 - PROBS.max(1))
    np.testing.assert_allclose(uncertainty(PROBS, "entropy"), entropy(PROBS, axis=1))  # scipy's entropy, natural log
    top = np.sort(PROBS, 1)
    np.testing.assert_allclose(uncertainty(PROBS, "margin"), top[:, -2] - top[:, -1])
    # the full order, most informative first; ties (none here) would keep pool order
    assert select("entropy", 5, probs=PROBS) == list(np.argsort(-entropy(PROBS, axis=1), kind="stable"))


def test_ties_keep_pool_order():
    flat = np.full((4, 2), 0.5)
    assert select("margin", 3, probs=flat) == [0, 1, 2]


def test_k_center_greedy_covers_the_pool_from_the_labelled_points():
    pool = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [20.0]])
    # labelled at 0: the farthest pool point is 20, then (distances to {0, 20}) 10 is farthest, then 2 / 11 …
    assert k_center_greedy(pool, 3, labelled=np.array([[0.0]])) == [5, 3, 2]
    assert select("kcenter", 2, embeddings=pool, labelled_embeddings=np.array([[0.0]])) == [5, 3]
    # without labelled points the first centre is a seeded pick, and the rest follow from it
    first = int(np.random.default_rng(7).integers(6))
    picked = k_center_greedy(pool, 6, seed=7)
    assert picked[0] == first and sorted(picked) == list(range(6))


def test_random_is_a_seeded_permutation():
    assert select("random", 3, probs=PROBS, seed=3) == list(np.random.default_rng(3).permutation(5)[:3])
    assert select("random", 9, probs=PROBS, seed=3) == list(np.random.default_rng(3).permutation(5))


def test_unknown_or_underfed_strategies_say_what_is_missing():
    with pytest.raises(UserError, match="not one of"):
        select("bald", 1, probs=PROBS)
    with pytest.raises(UserError, match="embeddings"):
        select("kcenter", 1, probs=PROBS)
