"""recall@k, its random-ranking baseline, CLIP score and Inception Score on constructed inputs, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from trainforge.vision.retrieval import (
    clip_score,
    inception_score,
    positives_matrix,
    random_recall_at_k,
    recall_at_k,
    retrieval_metrics,
)


def test_recall_at_k_on_a_constructed_similarity_matrix():
    # query 0's pair ranks 1st, query 1's 2nd, query 2's 3rd (similarities chosen so)
    sim = np.array([[0.9, 0.1, 0.0],
                    [0.8, 0.5, 0.1],
                    [0.7, 0.6, 0.2]])
    r = recall_at_k(sim, positives_matrix(3), ks=(1, 2, 3))
    assert r == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(1.0)}


def test_same_label_items_are_positives():
    sim = np.array([[0.1, 0.9, 0.0],
                    [0.9, 0.1, 0.0],
                    [0.0, 0.9, 0.1]])
    groups = ["a", "a", "b"]  # 0 and 1 share a label: each retrieving the other first is a hit
    assert recall_at_k(sim, positives_matrix(3, groups), ks=(1,))[1] == pytest.approx(2 / 3)
    assert recall_at_k(sim, positives_matrix(3), ks=(1,))[1] == pytest.approx(0.0)


def test_random_ranking_recall_in_closed_form():
    pos = positives_matrix(4, ["a", "a", "b", "c"])  # p = 2, 2, 1, 1 among N = 4
    r = random_recall_at_k(pos, ks=(1, 2))
    # k=1: p/N → (0.5 + 0.5 + 0.25 + 0.25) / 4 ; k=2: 1 - C(4-p, 2)/C(4, 2) → (1-1/6, 1-1/6, 0.5, 0.5)
    assert r[1] == pytest.approx(0.375)
    assert r[2] == pytest.approx((5 / 6 + 5 / 6 + 0.5 + 0.5) / 4)


def test_random_recall_matches_a_simulation():
    rng = np.random.default_rng(0)
    pos = positives_matrix(12, list("aabbbcccdddd"))
    hits = np.mean([recall_at_k(rng.random((12, 12)), pos, ks=(3,))[3] for _ in range(3000)])
    assert hits == pytest.approx(random_recall_at_k(pos, ks=(3,))[3], abs=0.01)


def test_clip_score_is_100_times_the_clamped_mean_cosine():
    img = np.array([[3.0, 0.0], [0.0, 2.0]])
    txt = np.array([[1.0, 1.0], [0.0, -5.0]])  # cosines: 1/sqrt(2) and -1
    assert clip_score(img, txt) == pytest.approx(100 * max((2 ** -0.5 - 1) / 2, 0))  # negative mean → 0
    txt2 = np.array([[1.0, 1.0], [1.0, 1.0]])  # cosines 1/sqrt(2) each
    assert clip_score(img, txt2) == pytest.approx(100 / np.sqrt(2))
    m = retrieval_metrics(img, txt2)
    assert m["model"]["clip_score"] == pytest.approx(100 / np.sqrt(2), abs=1e-3)


def test_inception_score_by_hand():
    assert inception_score(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(2.0)  # confident and diverse: K
    assert inception_score(np.array([[0.5, 0.5], [0.5, 0.5]])) == pytest.approx(1.0)  # uninformative
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    marginal = p.mean(0)
    kl = (p * np.log(p / marginal)).sum(1).mean()
    assert inception_score(p) == pytest.approx(np.exp(kl))


def test_image_to_text_ranks_distinct_captions():
    from trainforge.vision.retrieval import unique_captions

    texts = ["seven", "seven", "one", "seven"]
    cols, pos = unique_captions(texts)
    assert cols == [0, 2] and pos.tolist() == [[True, False], [True, False], [False, True], [True, False]]
    img = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.1]])
    txt = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # "seven" → e0, "one" → e1
    m = retrieval_metrics(img, txt, texts=texts, ks=(1, 2))
    assert m["model"]["i2t_recall_at_1"] == pytest.approx(3 / 4)  # image 1 (a seven) looks like "one"
    assert m["model"]["i2t_recall_at_2"] == pytest.approx(1.0)   # 2 distinct captions: top 2 holds every one
    assert m["random"]["i2t_recall_at_1"] == pytest.approx(0.5)
