"""Decontamination: drop training documents that share a long n-gram with the validation/test text.

n-grams are characters for CJK text and words otherwise (the same shingling as MinHash, with a long
n: 13 by default, as in GPT-3's decontamination). A document shorter than n is one n-gram (the whole
text), so it only matches an identical evaluation document.
"""

from __future__ import annotations

import numpy as np

from trainforge.data.minhash import char_shingles, is_cjk_text, word_shingles


def _hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, owner doc index) over all texts, CJK by characters, others by words."""
    hs, owners = [], []
    cjk = np.fromiter((is_cjk_text(t) for t in texts), dtype=bool, count=len(texts))
    for mask, shingle in ((cjk, char_shingles), (~cjk, word_shingles)):
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            continue
        h, first = shingle([texts[i] for i in idx], n)
        counts = np.diff(np.append(first, len(h)))
        hs.append(h)
        owners.append(np.repeat(idx, counts))
    if not hs:
        return np.empty(0, np.uint64), np.empty(0, np.int64), cjk
    return np.concatenate(hs), np.concatenate(owners), cjk


def contaminated(train_texts: list[str], reference_texts: list[str], n: int) -> np.ndarray:
    """Boolean mask over train_texts: True where a document shares an n-gram with any reference text."""
    out = np.zeros(len(train_texts), dtype=bool)
    if not train_texts or not reference_texts:
        return out
    ref, _, _ = _hashes(reference_texts, n)
    h, owner, _ = _hashes(train_texts, n)
    hit = np.isin(h, ref)
    out[np.unique(owner[hit])] = True
    return out
