"""The per-document work of the pipeline, one shard per call, run in the executor's workers.

One pass per shard does everything that depends on a document alone — normalise, filters, quality
perplexities, the exact-dedup digest and the MinHash signature — so the texts cross the process
boundary once each way at most, and the parent keeps only the global decisions (percentile cut,
exact and near dedup across shards, decontamination, split).

What comes back is compact: a normalised text only where normalisation changed it (None otherwise,
the parent already holds the original), digests as one bytes blob (16 bytes a document) and
signatures as one uint32 array (documents × permutations), not a Python object per document.

Every value is a function of the document alone, so the parent's decisions, and the kept set, are
the same for any shard layout and worker count.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from trainforge.data import minhash as M
from trainforge.data.bloom import digest
from trainforge.data.config import FilterSpec, NormalizeConfig

DIGEST_BYTES = 16
"""blake2b-128 (bloom.digest)."""


@dataclass
class ShardJob:
    texts: list[str]
    normalize: NormalizeConfig
    filters: list[FilterSpec]
    minhash: M.MinHashParams | None = None
    """Signature parameters when near dedup is on; None skips signatures."""
    skip_repeats: bool = False
    """No signature for a text already seen earlier in this shard: exact dedup drops it anyway
    (only when exact dedup is on; its row stays zero and never reaches near dedup)."""


@dataclass
class ShardResult:
    texts: list[str | None]
    """Normalised text where it differs from the input; None where unchanged (not shipped back)."""
    dropped: list[tuple[str, str] | None]
    """(step, reason) for a dropped document, None for a survivor."""
    scores: list[float | None]
    """Quality perplexity for survivors when a quality filter is configured."""
    digests: bytes
    """DIGEST_BYTES per document, in order; zeros for dropped documents."""
    sigs: np.ndarray | None
    """(documents, num_perm) uint32 MinHash signatures; zero rows for dropped documents and skipped repeats."""
    raw_sizes: np.ndarray
    """UTF-8 bytes of each input text, int64 (the funnel's byte counts, without re-encoding in the parent)."""
    sizes: np.ndarray
    """UTF-8 bytes of each normalised text, int64."""
    changed: Counter
    pii: Counter
    seconds: Counter


def process_shard(job: ShardJob) -> ShardResult:
    from trainforge.data.filters import build_filters
    from trainforge.data.normalize import Normalizer
    from trainforge.data.quality import reference_lm

    seconds: Counter = Counter()
    t0 = time.perf_counter()
    norm = Normalizer(job.normalize)
    texts = [norm(t) for t in job.texts]
    seconds["normalize"] += time.perf_counter() - t0
    # whitespace/control-only text becomes empty here: dropped, counted, never passed on
    dropped: list[tuple[str, str] | None] = [None if t else ("normalize", "empty_after_normalization") for t in texts]
    for f in build_filters(job.filters):
        t0 = time.perf_counter()
        for i, t in enumerate(texts):
            if dropped[i] is None:
                r = f.reason(t)
                if r:
                    dropped[i] = (f"filter_{f.name}", r)
        seconds[f"filter_{f.name}"] += time.perf_counter() - t0
    alive = [i for i, d in enumerate(dropped) if d is None]
    scores: list[float | None] = [None] * len(texts)
    quality = next((s.quality for s in job.filters if s.quality is not None), None)
    if quality is not None and alive:
        t0 = time.perf_counter()
        lm = reference_lm(quality.reference)
        for i, ppl in zip(alive, lm.perplexities([texts[i] for i in alive]).tolist()):
            scores[i] = ppl
        seconds["filter_quality"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    zero = bytes(DIGEST_BYTES)
    digests = [zero] * len(texts)
    for i in alive:
        digests[i] = digest(texts[i])
    seconds["dedup_exact"] += time.perf_counter() - t0
    sigs = None
    if job.minhash is not None:
        t0 = time.perf_counter()
        todo = alive
        if job.skip_repeats:
            first: set[bytes] = set()
            todo = [i for i in alive if not (digests[i] in first or first.add(digests[i]))]
        sigs = np.zeros((len(texts), job.minhash.num_perm), dtype=np.uint32)
        if todo:
            sigs[todo] = M.signatures([texts[i] for i in todo], job.minhash)
        seconds["dedup_near"] += time.perf_counter() - t0
    back = [t if t != raw else None for t, raw in zip(texts, job.texts)]
    return ShardResult(back, dropped, scores, b"".join(digests), sigs, utf8_sizes(job.texts), utf8_sizes(texts),
                       norm.changed, norm.pii, seconds)


def utf8_sizes(texts: list[str]) -> np.ndarray:
    return np.fromiter((len(t.encode("utf-8", "surrogatepass")) for t in texts), dtype=np.int64, count=len(texts))


def signature_shard(args: tuple[list[str], M.MinHashParams]) -> np.ndarray:
    """Signatures alone (near dedup over records that did not come through `process_shard`)."""
    texts, params = args
    return M.signatures(texts, params)
