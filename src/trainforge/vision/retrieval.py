"""Image–text metrics: retrieval recall@k (beside random ranking), CLIP score, and Inception Score.

recall@k. A query (an image, or a caption) is a hit at k when one of its positives ranks in its top k
by cosine similarity. Positives: the query's own pair, and — when records carry a label (the
`digits-captions` digit) — every item of the same label, since captions that say the same thing are
interchangeable ("a handwritten digit seven" and a second image's identical caption). Ties rank in
index order (a stable sort), so the result is deterministic.

random ranking. The recall a model that ranks at random would have, in closed form: a query with p
positives among N candidates misses the top k with probability C(N-p, k) / C(N, k).

CLIP score (Hessel et al., 2021, as torchmetrics defines it): 100 · max(mean over pairs of
cos(image embedding, text embedding), 0), on the projected, L2-normalised embeddings of any CLIP model.
torchmetrics' CLIPScore itself cannot run here: on transformers 5 `get_image_features` returns an output
object, not a tensor.

Inception Score (Salimans et al., 2016): exp(E_x KL(p(y|x) ‖ p(y))) over a classifier's predicted
distributions. The usual classifier is Inception-v3 on ImageNet; no pip package ships its weights and
nothing is downloaded here, so the score is defined over a classifier the user names (for example the
run's own image classifier). Scores over different classifiers are not comparable with each other, nor with
published Inception-v3 figures.
"""

from __future__ import annotations

from math import comb

import numpy as np


def positives_matrix(n: int, groups: list | None = None) -> np.ndarray:
    """(n, n) bool: item i's positives among the n candidates (itself, and same-group items)."""
    eye = np.eye(n, dtype=bool)
    if groups is None or any(g is None for g in groups):
        return eye
    g = np.asarray(groups, dtype=object)
    return eye | (g[:, None] == g[None, :])


def recall_at_k(sim: np.ndarray, positives: np.ndarray, ks=(1, 5, 10)) -> dict[int, float]:
    """sim (queries, candidates), positives the same shape → {k: share of queries with a positive in the top k}."""
    order = np.argsort(-sim, axis=1, kind="stable")
    hit_rank = np.array([np.flatnonzero(positives[q, order[q]])[0] for q in range(sim.shape[0])])  # 0-based
    return {k: float((hit_rank < k).mean()) for k in ks}


def random_recall_at_k(positives: np.ndarray, ks=(1, 5, 10)) -> dict[int, float]:
    """Expected recall@k of a random ranking, per query 1 - C(N-p, k) / C(N, k), averaged."""
    n = positives.shape[1]
    p = positives.sum(1)
    return {k: float(np.mean([1.0 - comb(n - int(pi), min(k, n)) / comb(n, min(k, n)) for pi in p])) for k in ks}


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def unique_captions(texts: list[str], groups: list | None = None) -> tuple[list[int], np.ndarray]:
    """(index of each distinct caption's first occurrence, (n images, n distinct) positives): image→text ranks
    distinct captions — a caption repeated for 180 images is one candidate, not 180 tied ones that would fill
    every top k with the same text."""
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    cols = list(first.values())
    if groups is None or any(g is None for g in groups):
        pos = np.array([[texts[i] == texts[c] for c in cols] for i in range(len(texts))], dtype=bool)
    else:
        pos = np.array([[groups[i] == groups[c] for c in cols] for i in range(len(texts))], dtype=bool)
    return cols, pos


def retrieval_metrics(image_emb: np.ndarray, text_emb: np.ndarray, groups: list | None = None, ks=(1, 5, 10),
                      texts: list[str] | None = None) -> dict:
    """image→text and text→image recall@k, the random-ranking baseline of each, and the CLIP score.
    texts: the captions; given, image→text ranks the distinct ones (unique_captions)."""
    img, txt = normalise(image_emb), normalise(text_emb)
    sim = img @ txt.T
    pos = positives_matrix(len(img), groups)
    i2t_sim, i2t_pos = sim, pos
    if texts is not None:
        cols, i2t_pos = unique_captions(texts, groups)
        i2t_sim = sim[:, cols]
    i2t, t2i = recall_at_k(i2t_sim, i2t_pos, ks), recall_at_k(sim.T, pos.T, ks)
    r_i2t, r_t2i = random_recall_at_k(i2t_pos, ks), random_recall_at_k(pos.T, ks)
    out = {f"i2t_recall_at_{k}": round(v, 5) for k, v in i2t.items()}
    out |= {f"t2i_recall_at_{k}": round(v, 5) for k, v in t2i.items()}
    base = {f"i2t_recall_at_{k}": round(v, 5) for k, v in r_i2t.items()}
    base |= {f"t2i_recall_at_{k}": round(v, 5) for k, v in r_t2i.items()}
    out["clip_score"] = round(clip_score(img, txt), 4)
    return {"model": out, "random": base}


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray) -> float:
    """100 · max(mean_i cos(image_i, text_i), 0)."""
    cos = (normalise(image_emb) * normalise(text_emb)).sum(1)
    return float(100.0 * max(cos.mean(), 0.0))


def inception_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """exp(mean_x KL(p(y|x) ‖ p(y))), p(y) the mean of the rows; 1 (all alike) … number of classes."""
    probs = np.asarray(probs, dtype=np.float64)
    marginal = probs.mean(0, keepdims=True)
    kl = (probs * (np.log(probs + eps) - np.log(marginal + eps))).sum(1)
    return float(np.exp(kl.mean()))
