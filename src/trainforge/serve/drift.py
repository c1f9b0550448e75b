"""Drift: live inputs compared with a reference profile of the training data.

The profile (JSON, written by the register stage to register/drift_profile.json, or built at serve
time from data/train.jsonl) holds one histogram per feature:

    length    text length in characters, bins at the reference's quantiles
    chars     the reference's most frequent characters one by one + 'other' (character distribution)
    cluster   nearest of k k-means centroids of hashed char 1–2-gram embeddings (topic mix)
    label     the model's predicted labels (classifiers only)

Per feature, with additive smoothing s on every bin (so an empty bin never gives an infinite score):
    p_i = (live_i + s) / (N_live + s·B),  q_i = (ref_i + s) / (N_ref + s·B)
    KL(p || q) = Σ p_i ln(p_i / q_i)          PSI = Σ (p_i − q_i) ln(p_i / q_i)
A feature drifts when PSI > psi_threshold or KL > kl_threshold (config).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from trainforge.serve.config import DriftConfig

HASH_FEATURES = 1024  # hashed n-gram space of the cluster embedding; centroids are k × this in the JSON
OTHER = "\u0000other"


def _embedder():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char", ngram_range=(1, 2), n_features=HASH_FEATURES, alternate_sign=False, norm="l2")


def build_profile(texts: list[str], predicted: list[str] | None, cfg: DriftConfig, seed: int = 0) -> dict:
    """The reference histograms of `texts` (and of the model's predictions on them)."""
    from sklearn.cluster import KMeans

    if len(texts) < max(cfg.clusters * 5, 20):
        raise ValueError(f"a drift reference needs at least {max(cfg.clusters * 5, 20)} texts, got {len(texts)}")
    lengths = np.array([len(t) for t in texts])
    edges = sorted(set(np.quantile(lengths, np.linspace(0, 1, cfg.length_bins + 1))[1:-1].round().tolist()))
    char_counts = Counter(c for t in texts for c in t)
    vocab = [c for c, _ in char_counts.most_common(cfg.top_chars)]
    kmeans = KMeans(n_clusters=cfg.clusters, n_init=3, random_state=seed).fit(_embedder().transform(texts))
    profile = {
        "n": len(texts),
        "length_edges": edges,
        "char_vocab": vocab,
        "centroids": kmeans.cluster_centers_.round(5).tolist(),
        "labels": sorted(set(predicted)) if predicted else [],
    }
    counts = FeatureCounts.of(profile, texts, predicted)
    profile["histograms"] = counts.histograms()
    return profile


@dataclass
class FeatureCounts:
    """Bin counts of each feature for a set of texts, in the profile's bins."""

    length: np.ndarray
    chars: np.ndarray
    cluster: np.ndarray
    label: np.ndarray | None

    @staticmethod
    def bins_of(profile: dict, text: str) -> tuple[int, Counter, int]:
        length_bin = int(np.searchsorted(profile["length_edges"], len(text), side="right"))
        index = {c: i for i, c in enumerate(profile["char_vocab"])}
        chars = Counter(index.get(c, len(index)) for c in text)
        centroids = np.asarray(profile["centroids"])
        vec = _embedder().transform([text]).toarray()[0]
        cluster = int(((centroids - vec) ** 2).sum(1).argmin())
        return length_bin, chars, cluster

    @classmethod
    def of(cls, profile: dict, texts: list[str], predicted: list[str] | None) -> "FeatureCounts":
        counts = cls.empty(profile)
        for t in texts:
            counts.add(profile, cls.bins_of(profile, t), 1)
        if predicted and counts.label is not None:
            for p in predicted:
                counts.add_label(profile, p, 1)
        return counts

    @classmethod
    def empty(cls, profile: dict) -> "FeatureCounts":
        labels = profile.get("labels") or []
        return cls(np.zeros(len(profile["length_edges"]) + 1), np.zeros(len(profile["char_vocab"]) + 1),
                   np.zeros(len(profile["centroids"])), np.zeros(len(labels)) if labels else None)

    def add(self, profile: dict, bins: tuple[int, Counter, int], sign: int) -> None:
        length_bin, chars, cluster = bins
        self.length[length_bin] += sign
        for i, n in chars.items():
            self.chars[i] += sign * n
        self.cluster[cluster] += sign

    def add_label(self, profile: dict, label: str, sign: int) -> None:
        if self.label is not None and label in profile["labels"]:
            self.label[profile["labels"].index(label)] += sign

    def histograms(self) -> dict[str, list[float]]:
        out = {"length": self.length.tolist(), "chars": self.chars.tolist(), "cluster": self.cluster.tolist()}
        if self.label is not None:
            out["label"] = self.label.tolist()
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

    def __init__(self, profile: dict, cfg: DriftConfig):
        self.profile, self.cfg = profile, cfg
        self.counts = FeatureCounts.empty(profile)
        self._items: deque = deque()
        self._since_check = 0
        self.last: dict[str, dict] = {}

    def __len__(self) -> int:
        return len(self._items)

    def observe(self, text: str, label: str | None = None) -> dict[str, dict] | None:
        """Add one input; returns fresh scores every `check_every` inputs once `min_samples` are in."""
        bins = FeatureCounts.bins_of(self.profile, text)
        self.counts.add(self.profile, bins, 1)
        self.counts.add_label(self.profile, label, 1) if label is not None else None
        self._items.append((bins, label))
        if len(self._items) > self.cfg.window:
            old_bins, old_label = self._items.popleft()
            self.counts.add(self.profile, old_bins, -1)
            if old_label is not None:
                self.counts.add_label(self.profile, old_label, -1)
        self._since_check += 1
        if len(self._items) < self.cfg.min_samples or self._since_check < self.cfg.check_every:
            return None
        self._since_check = 0
        self.last = score(self.profile, self.counts, self.cfg)
        return self.last


def compare_texts(profile: dict, texts: list[str], predicted: list[str] | None, cfg: DriftConfig) -> dict:
    """Offline: a whole file of inputs against the profile (no window)."""
    scores = score(profile, FeatureCounts.of(profile, texts, predicted), cfg)
    return {"n": len(texts), "reference_n": profile["n"], "psi_threshold": cfg.psi_threshold,
            "kl_threshold": cfg.kl_threshold, "features": scores,
            "drifted": sorted(f for f, s in scores.items() if s["drifted"])}


def finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
