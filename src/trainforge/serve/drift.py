"""Drift: live inputs compared with a reference profile of the training data.

The profile (JSON, written by the register stage to register/drift_profile.json, or built at serve
time from data/train.jsonl) holds one histogram per feature:

    length    text length in characters, bins at the reference's quantiles
    chars     the reference's most frequent characters one by one + 'other' (character distribution)
    tokens    the same over the model tokenizer's ids (what the model actually sees)
    cluster   nearest of k k-means centroids of hashed char 1–2-gram embeddings (topic mix)
    label     the model's predicted labels (classifiers only)

Per feature, with additive smoothing s on every bin (so an empty bin never gives an infinite score):
    p_i = (live_i + s) / (N_live + s·B),  q_i = (ref_i + s) / (N_ref + s·B)
    KL(p || q) = Σ p_i ln(p_i / q_i)          PSI = Σ (p_i − q_i) ln(p_i / q_i)
A feature drifts when PSI > psi_threshold or KL > kl_threshold (config).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from trainforge.serve.config import DriftConfig

HASH_FEATURES = 1024  # hashed n-gram space of the cluster embedding; centroids are k × this in the JSON


def _embedder():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char", ngram_range=(1, 2), n_features=HASH_FEATURES, alternate_sign=False, norm="l2")


def build_profile(texts: list[str], predicted: list[str] | None, cfg: DriftConfig, seed: int = 0,
                  tokenize=None) -> dict:
    """The reference histograms of `texts` (and of the model's predictions on them), as JSON-ready dict.
    `tokenize(texts) -> [[token id, …], …]` adds the token distribution."""
    from sklearn.cluster import KMeans

    if len(texts) < max(cfg.clusters * 5, 20):
        raise ValueError(f"a drift reference needs at least {max(cfg.clusters * 5, 20)} texts, got {len(texts)}")
    lengths = np.array([len(t) for t in texts])
    edges = sorted(set(np.quantile(lengths, np.linspace(0, 1, cfg.length_bins + 1))[1:-1].round().tolist()))
    char_counts = Counter(c for t in texts for c in t)
    kmeans = KMeans(n_clusters=cfg.clusters, n_init=3, random_state=seed).fit(_embedder().transform(texts))
    profile = {
        "n": len(texts),
        "length_edges": edges,
        "char_vocab": [c for c, _ in char_counts.most_common(cfg.top_chars)],
        "centroids": kmeans.cluster_centers_.round(5).tolist(),
        "labels": sorted(set(predicted)) if predicted else [],
        "token_vocab": [t for t, _ in Counter(t for ids in tokenize(texts) for t in ids).most_common(cfg.top_tokens)]
        if tokenize else [],
    }
    profile["histograms"] = Bins(profile, tokenize).count(texts, predicted).histograms()
    return profile


class Bins:
    """A profile's bins, ready to place texts in (arrays built once, not per input)."""

    def __init__(self, profile: dict, tokenize=None):
        self.profile = profile
        vocab = profile.get("token_vocab") or []
        self.tokenize = tokenize if vocab else None  # no token feature without both a vocab and a tokenizer
        self.token_index = {t: i for i, t in enumerate(vocab)}
        self.edges = np.asarray(profile["length_edges"])
        self.char_index = {c: i for i, c in enumerate(profile["char_vocab"])}
        self.centroids = np.asarray(profile["centroids"])  # (k, HASH_FEATURES)
        self.labels = list(profile.get("labels") or [])
        self.embedder = _embedder()

    def of(self, texts: list[str]) -> list[tuple]:
        """(length bin, character-bin counts, cluster, token-bin counts or None) per text."""
        vecs = self.embedder.transform(texts)  # sparse (n, HASH_FEATURES), rows L2-normalised
        # nearest centroid by squared distance: |c|² − 2 c·x (|x|² is the same for every centroid)
        dist = (self.centroids ** 2).sum(1)[None, :] - 2 * np.asarray(vecs @ self.centroids.T)
        clusters = dist.argmin(1)
        other, other_token = len(self.char_index), len(self.token_index)
        token_ids = self.tokenize(texts) if self.tokenize else [None] * len(texts)
        return [(int(np.searchsorted(self.edges, len(t), side="right")),
                 Counter(self.char_index.get(c, other) for c in t), int(k),
                 Counter(self.token_index.get(i, other_token) for i in ids) if ids is not None else None)
                for t, k, ids in zip(texts, clusters, token_ids)]

    def empty(self) -> "FeatureCounts":
        return FeatureCounts(np.zeros(len(self.edges) + 1), np.zeros(len(self.char_index) + 1),
                             np.zeros(len(self.centroids)), np.zeros(len(self.labels)) if self.labels else None,
                             np.zeros(len(self.token_index) + 1) if self.tokenize else None)

    def count(self, texts: list[str], predicted: list[str] | None) -> "FeatureCounts":
        counts = self.empty()
        for bins in self.of(texts):
            counts.add(bins, 1)
        for label in predicted or []:
            counts.add_label(self.labels, label, 1)
        return counts


@dataclass
class FeatureCounts:
    """Bin counts of each feature for a set of texts."""

    length: np.ndarray
    chars: np.ndarray
    cluster: np.ndarray
    label: np.ndarray | None
    tokens: np.ndarray | None = None

    def add(self, bins: tuple, sign: int) -> None:
        length_bin, chars, cluster, tokens = bins
        self.length[length_bin] += sign
        for i, n in chars.items():
            self.chars[i] += sign * n
        self.cluster[cluster] += sign
        if tokens is not None and self.tokens is not None:
            for i, n in tokens.items():
                self.tokens[i] += sign * n

    def add_label(self, labels: list[str], label: str, sign: int) -> None:
        if self.label is not None and label in labels:
            self.label[labels.index(label)] += sign

    def histograms(self) -> dict[str, list[float]]:
        out = {"length": self.length.tolist(), "chars": self.chars.tolist(), "cluster": self.cluster.tolist()}
        if self.label is not None:
            out["label"] = self.label.tolist()
        if self.tokens is not None:
            out["tokens"] = self.tokens.tolist()
        return out


def divergences(live: np.ndarray, ref: np.ndarray, smoothing: float) -> tuple[float, float]:
    """(PSI, KL(live || ref)) of two count vectors over the same bins, both additively smoothed."""
    live, ref = np.asarray(live, float), np.asarray(ref, float)
    p = (live + smoothing) / (live.sum() + smoothing * len(live))
    q = (ref + smoothing) / (ref.sum() + smoothing * len(ref))
    ratio = np.log(p / q)
    return float(((p - q) * ratio).sum()), float((p * ratio).sum())


def score(profile: dict, counts: FeatureCounts, cfg: DriftConfig) -> dict[str, dict]:
    """{feature: {"psi", "kl", "drifted"}} of live counts against the reference histograms."""
    out = {}
    for feature, live in counts.histograms().items():
        ref = profile["histograms"].get(feature)
        if ref is None or sum(live) == 0:
            continue
        psi, kl = divergences(np.asarray(live), np.asarray(ref), cfg.smoothing)
        out[feature] = {"psi": round(psi, 5), "kl": round(kl, 5),
                        "drifted": bool(psi > cfg.psi_threshold or kl > cfg.kl_threshold)}
    return out


class DriftWindow:
    """The last `cfg.window` live inputs, kept as bin counts so a check costs O(bins), not O(window)."""

    def __init__(self, profile: dict, cfg: DriftConfig, tokenize=None):
        self.profile, self.cfg = profile, cfg
        self.bins = Bins(profile, tokenize)
        self.counts = self.bins.empty()
        self._items: deque = deque()
        self._since_check = 0
        self.last: dict[str, dict] = {}

    def __len__(self) -> int:
        return len(self._items)

    def observe(self, text: str, label: str | None = None) -> dict[str, dict] | None:
        """Add one input; returns fresh scores every `check_every` inputs once `min_samples` are in."""
        bins = self.bins.of([text])[0]
        self.counts.add(bins, 1)
        if label is not None:
            self.counts.add_label(self.bins.labels, label, 1)
        self._items.append((bins, label))
        if len(self._items) > self.cfg.window:
            old_bins, old_label = self._items.popleft()
            self.counts.add(old_bins, -1)
            if old_label is not None:
                self.counts.add_label(self.bins.labels, old_label, -1)
        self._since_check += 1
        if len(self._items) < self.cfg.min_samples or self._since_check < self.cfg.check_every:
            return None
        self._since_check = 0
        self.last = score(self.profile, self.counts, self.cfg)
        return self.last


def compare_texts(profile: dict, texts: list[str], predicted: list[str] | None, cfg: DriftConfig,
                  tokenize=None) -> dict:
    """Offline: a whole file of inputs against the profile (no window)."""
    scores = score(profile, Bins(profile, tokenize).count(texts, predicted), cfg)
    return {"n": len(texts), "reference_n": profile["n"], "psi_threshold": cfg.psi_threshold,
            "kl_threshold": cfg.kl_threshold, "features": scores,
            "drifted": sorted(f for f, s in scores.items() if s["drifted"])}
