"""Near-duplicate detection: vectorised MinHash signatures, LSH banding, exact-Jaccard confirmation.

Why our own MinHash instead of datasketch's: datasketch hashes one document at a time in Python
(one `update` per shingle), which caps it near 1–2k docs/s. Here a whole batch of documents is one
numpy computation:

    texts ──join──▶ codepoints c[N] (uint32; n-1 zeros between documents)
          ──rolling polynomial──▶ shingle hash h[S] (uint64, one per char n-gram start)
          ──multiply-shift, all permutations at once──▶ v[P, S] = (a·h + b) >> 32
          ──np.minimum.reduceat over each document's shingles──▶ signature[D, P]

Documents shorter than n are one shingle (the text padded with zeros), so short documents are
deduplicated too (datatrove never deduplicates documents under 5 tokens). CJK text uses character
n-grams; other text uses word n-grams (crc32 of each word, then the same rolling combine).

LSH: the signature is cut into `bands` × `rows`; two documents sharing any band become a candidate
pair. bands × rows is chosen from the target threshold so that a pair *at* the threshold is found
with probability ≥ 0.99 (the S-curve is printed); every candidate is then confirmed by the exact
Jaccard of its shingle sets, so the looser banding costs a little verification time, never precision.
Clusters are the connected components (union-find) of confirmed pairs over the whole corpus, so
documents in different shards still meet.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from trainforge.text_scripts import is_cjk_text

_MASK64 = (1 << 64) - 1
_POLY = np.uint64(0x100000001B3)  # FNV prime: an odd multiplier for the rolling combine
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    """Signature length; more permutations → sharper S-curve, more time."""
    ngram: int = 5
    """Shingle size: characters for CJK text, words otherwise."""
    seed: int = 1
    batch_chars: int = 20_000
    """Characters hashed at once: the (permutations × shingles) intermediate is ~1 KiB a character
    (~20 MB by default; out-of-core curation takes less, for its memory budget). The result does not change."""

    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, 1 << 63, size=self.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
        b = rng.integers(0, 1 << 63, size=self.num_perm, dtype=np.uint64)
        return a[:, None], b[:, None]


def _mix64(h: np.ndarray) -> np.ndarray:
    # a splitmix-style finaliser: the rolling hash alone has weak low bits
    h = h ^ (h >> np.uint64(31))
    h = h * _MIX
    return h ^ (h >> np.uint64(29))


def _rolling(codes: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every window of n consecutive codes: shape (len(codes) - n + 1,)."""
    m = len(codes) - n + 1
    h = codes[:m].astype(np.uint64)
    for j in range(1, n):
        h = h * _POLY + codes[j : j + m]
    return _mix64(h)


def _segments(lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets (in the zero-padded concatenation) of every shingle, and each doc's shingle count."""
    padded = lengths + (n - 1)
    doc_start = np.concatenate(([0], np.cumsum(padded)[:-1]))
    counts = np.maximum(lengths - n + 1, 1)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.repeat(doc_start - first, counts) + np.arange(counts.sum())
    return pos, first


def char_shingles(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes[S], first[D]): every doc's character n-gram hashes, concatenated."""
    sep = "\0" * (n - 1)
    codes = np.frombuffer((sep.join(texts) + sep).encode("utf-32-le"), dtype=np.uint32)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    pos, first = _segments(lengths, n)
    return _rolling(codes, n)[pos], first


def word_shingles(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    words = [t.split() for t in texts]
    codes = []
    for w in words:
        codes.extend(zlib.crc32(x.encode()) + 1 for x in w)  # +1: 0 is the padding code
        codes.extend([0] * (n - 1))
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    pos, first = _segments(lengths, n)
    return _rolling(np.asarray(codes, dtype=np.uint64), n)[pos], first


def signatures(texts: list[str], params: MinHashParams, batch_chars: int | None = None) -> np.ndarray:
    """MinHash signatures, shape (len(texts), num_perm), uint32."""
    batch_chars = batch_chars or params.batch_chars
    a, b = params.permutations()
    out = np.empty((len(texts), params.num_perm), dtype=np.uint32)
    cjk = np.fromiter((is_cjk_text(t) for t in texts), dtype=bool, count=len(texts))
    for mask, shingle in ((cjk, char_shingles), (~cjk, word_shingles)):
        idx = np.flatnonzero(mask)
        start = 0
        while start < len(idx):
            # batch by characters so the (P, S) intermediate stays ~20 MB
            stop, chars = start, 0
            while stop < len(idx) and (chars < batch_chars or stop == start):
                chars += len(texts[idx[stop]]) + params.ngram
                stop += 1
            part = idx[start:stop]
            h, first = shingle([texts[i] for i in part], params.ngram)
            # (P, S) multiply-shift universal hashing, in place: fresh temporaries cost 5x in page faults.
            # The >> 32 comes after the min: a shift is monotone, so min(v) >> 32 == min(v >> 32).
            v = np.multiply(a, h[None, :])
            v += b
            out[part] = (np.minimum.reduceat(v, first, axis=1) >> np.uint64(32)).T.astype(np.uint32)
            start = stop
    return out


# --------------------------------------------------------------------------- LSH


def detection_probability(jaccard: float, bands: int, rows: int) -> float:
    return 1.0 - (1.0 - jaccard**rows) ** bands


def choose_bands_rows(threshold: float, num_perm: int, min_recall_at_threshold: float = 0.99) -> tuple[int, int]:
    """The largest rows (fewest false candidates) whose S-curve still finds a pair at the threshold
    with probability ≥ min_recall_at_threshold; bands = num_perm // rows."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if bands and detection_probability(threshold, bands, rows) >= min_recall_at_threshold:
            best = (bands, rows)
    return best


def s_curve(bands: int, rows: int, points=(0.5, 0.7, 0.8, 0.9)) -> dict[str, float]:
    return {f"{j:.1f}": round(detection_probability(j, bands, rows), 4) for j in points}


def band_key(sigs: np.ndarray, band: int, rows: int) -> np.ndarray:
    """One uint64 per document for band `band`: equal keys ⇔ (all but surely) equal rows of that band."""
    mult = np.random.default_rng(7).integers(1, 1 << 63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    block = sigs[:, band * rows : (band + 1) * rows].astype(np.uint64)
    return _mix64((block * mult).sum(axis=1, dtype=np.uint64))


def candidate_pairs(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Pairs (i, j), i < j, that share at least one band: shape (K, 2), unique, sorted."""
    n = len(sigs)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    pairs = []
    ids = np.arange(n, dtype=np.int64)
    for band in range(bands):
        key = band_key(sigs, band, rows)
        order = np.argsort(key, kind="stable")
        k = key[order]
        same = np.flatnonzero(k[1:] == k[:-1])  # neighbours in sorted order with equal keys: chain the group
        if len(same):
            i, j = ids[order[same]], ids[order[same + 1]]
            pairs.append(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def shingle_set(text: str, n: int) -> set:
    if is_cjk_text(text):
        return {text[i : i + n] for i in range(max(len(text) - n + 1, 1))}
    w = text.split()
    return {tuple(w[i : i + n]) for i in range(max(len(w) - n + 1, 1))}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)  # smallest index is the root: deterministic


def confirm_pairs(args: tuple[list[tuple[str, str]], float, int]) -> np.ndarray:
    """Exact Jaccard ≥ threshold for each (text, text) pair: bool array (runs in the executor's workers)."""
    pairs, threshold, ngram = args
    return np.fromiter((jaccard(shingle_set(a, ngram), shingle_set(b, ngram)) >= threshold for a, b in pairs),
                       dtype=bool, count=len(pairs))


def near_duplicate_clusters(texts: list[str], sigs: np.ndarray, threshold: float, bands: int, rows: int, ngram: int,
                            executor=None) -> tuple[list[list[int]], dict]:
    """Clusters (size ≥ 2, indices ascending) of documents whose confirmed Jaccard ≥ threshold.

    With a multi-worker `executor`, the exact-Jaccard checks the loop will want are made in the
    workers first (measured on 54k docs: 0.60 s vs 0.80 s in the parent alone); the union loop is the
    same either way, so clusters and counts do not change."""
    pairs = candidate_pairs(sigs, bands, rows)
    uf = UnionFind(len(texts))
    confirmed = 0
    # identical signatures: P(all 128 minima agree | Jaccard < 0.8) < 0.8^128 ≈ 4e-13, so these pairs
    # (exact copies, mostly) skip the exact-Jaccard check
    identical = (sigs[pairs[:, 0]] == sigs[pairs[:, 1]]).all(axis=1) if len(pairs) else np.zeros(0, bool)
    skip_check = identical if threshold <= 0.99 else np.zeros(len(pairs), bool)
    checked: dict[int, bool] = {}
    if executor is not None and getattr(executor, "workers", 1) > 1 and (~skip_check).any():
        from trainforge.data.executor import shard

        # which checks the loop below will want: not those inside a group of identical signatures, and
        # one per pair of groups (exact copies make many pairs between the same two groups); a pair
        # not checked here, wanted after all (its group-mate's check failed), is checked in the loop
        groups = UnionFind(len(texts))
        for i, j in pairs[skip_check].tolist():
            groups.union(i, j)
        todo, seen_groups = [], set()
        for k in np.flatnonzero(~skip_check).tolist():
            key = (groups.find(int(pairs[k, 0])), groups.find(int(pairs[k, 1])))
            if key[0] != key[1] and key not in seen_groups:
                seen_groups.add(key)
                todo.append(k)
        chunks = shard([(texts[i], texts[j]) for i, j in pairs[todo].tolist()], executor.workers * 4)
        ok = np.concatenate(executor.map(confirm_pairs, [(list(c), threshold, ngram) for c in chunks]))
        checked = dict(zip(todo, ok.tolist()))
    for k, ((i, j), same) in enumerate(zip(pairs.tolist(), skip_check.tolist())):
        if uf.find(i) == uf.find(j):
            continue
        if same:
            uf.union(i, j)
            confirmed += 1
            continue
        # no cache of shingle sets: ~80 bytes per shingle would make memory grow with the candidates
        if checked[k] if k in checked else (jaccard(shingle_set(texts[i], ngram), shingle_set(texts[j], ngram)) >= threshold):
            uf.union(i, j)
            confirmed += 1
    groups: dict[int, list[int]] = {}
    for i in range(len(texts)):
        groups.setdefault(uf.find(i), []).append(i)
    clusters = [g for g in groups.values() if len(g) > 1]
    return clusters, {"candidate_pairs": int(len(pairs)), "confirmed_pairs": confirmed, "clusters": len(clusters)}


def keep_one(cluster: list[int], policy: str, texts: list[str], scores: list[float] | None) -> int:
    """Which member of a cluster survives: first (input order), longest, or best quality score."""
    if policy == "longest":
        return max(cluster, key=lambda i: (len(texts[i]), -i))
    if policy == "quality":
        if scores is None:
            raise ValueError("keep=quality needs the quality filter's scores")
        return max(cluster, key=lambda i: (scores[i], -i))
    return min(cluster)
