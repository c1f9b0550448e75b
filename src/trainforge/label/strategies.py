"""Query strategies: which unlabelled records to label next.

    uncertainty (from the model's probabilities p, shape N × K; the higher the score, the sooner it is asked)
        least_confidence   1 - max_k p_k
        margin             -(p_(1) - p_(2))    the two most likely labels nearly tied
        entropy            -Σ_k p_k log p_k
    diversity (from embeddings, shape N × D)
        kcenter            k-center greedy (Sener & Savarese 2018): repeatedly take the pool point farthest from
                           every labelled point and every point taken so far, so a batch covers the pool instead of
                           piling into one uncertain region (uncertainty's known failure with large batches)
    random                 a seeded sample: the baseline every strategy must beat

Ties are broken by position (a stable sort), so the same inputs always queue the same records.
"""

from __future__ import annotations

import numpy as np

from trainforge.errors import UserError

STRATEGIES = ("least_confidence", "margin", "entropy", "kcenter", "random")


def uncertainty(probs: np.ndarray, strategy: str) -> np.ndarray:
    """Per-record score, higher = more informative."""
    p = np.asarray(probs, dtype=np.float64)
    if strategy == "least_confidence":
        return 1.0 - p.max(axis=1)
    if strategy == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])
    if strategy == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    raise UserError(f"label.strategy: {strategy!r} is not an uncertainty strategy (least_confidence, margin, entropy)")


def k_center_greedy(embeddings: np.ndarray, n: int, labelled: np.ndarray | None = None, seed: int = 0) -> list[int]:
    """Indices of `n` pool points chosen greedily to minimise the largest distance from any pool point to its
    nearest chosen-or-labelled point. `labelled`: embeddings already labelled (the first centres); without
    them the first centre is a seeded random pool point."""
    x = np.asarray(embeddings, dtype=np.float64)
    n = min(n, len(x))
    if n <= 0:
        return []
    chosen: list[int] = []
    if labelled is not None and len(labelled):
        c = np.asarray(labelled, dtype=np.float64)
        # nearest labelled centre: |x|² + |c|² - 2 x·c, 1,024 centres at a time (an N × 1,024 block, never N × L × D)
        nearest = np.full(len(x), np.inf)
        xx = (x * x).sum(1)
        for s in range(0, len(c), 1024):
            block = c[s : s + 1024]
            d = xx[:, None] + (block * block).sum(1)[None, :] - 2.0 * (x @ block.T)
            nearest = np.minimum(nearest, np.maximum(d, 0.0).min(axis=1))
    else:
        first = int(np.random.default_rng(seed).integers(len(x)))
        chosen.append(first)
        nearest = ((x - x[first]) ** 2).sum(-1)
    while len(chosen) < n:
        nearest[chosen] = -1.0  # never the same point twice
        far = int(np.argmax(nearest))  # the first of equals: deterministic
        chosen.append(far)
        nearest = np.minimum(nearest, ((x - x[far]) ** 2).sum(-1))
    return chosen


def select(strategy: str, n: int, probs: np.ndarray | None = None, embeddings: np.ndarray | None = None,
           labelled_embeddings: np.ndarray | None = None, seed: int = 0) -> list[int]:
    """The `n` pool indices `strategy` asks to label, most informative first."""
    if strategy not in STRATEGIES:
        raise UserError(f"label.strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    size = len(probs) if probs is not None else len(embeddings) if embeddings is not None else 0
    n = min(n, size)
    if strategy == "random":
        return [int(i) for i in np.random.default_rng(seed).permutation(size)[:n]]
    if strategy == "kcenter":
        if embeddings is None:
            raise UserError("label.strategy=kcenter needs embeddings of the pool (a model that returns hidden states)")
        return k_center_greedy(embeddings, n, labelled_embeddings, seed)
    if probs is None:
        raise UserError(f"label.strategy={strategy} needs the model's probabilities on the pool")
    score = uncertainty(probs, strategy)
    return [int(i) for i in np.argsort(-score, kind="stable")[:n]]
