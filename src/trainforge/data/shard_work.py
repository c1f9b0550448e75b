"""The per-document work of the pipeline, one shard per call, run in the executor's workers.

One pass per shard does everything that depends on a document alone — normalise, the per-document
filters, the corpus-level filter's scores, the exact-dedup digest and the MinHash signature — so
the texts cross the process boundary once each way at most, and the parent keeps only the global
decisions (fitting the corpus-level threshold, exact and near dedup across shards,
decontamination, split).

What comes back is compact: a normalised text only where normalisation changed it (None otherwise,
the parent already holds the original), digests as one bytes blob (16 bytes a document) and
signatures as one uint32 array (documents × permutations), not a Python object per document.

Every value is a function of the document alone, so the parent's decisions, and the kept set, are
the same for any shard layout and worker count.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from trainforge.data import minhash as M
from trainforge.data.bloom import digest
from trainforge.data.config import FilterSpec, NormalizeConfig

DIGEST_BYTES = 16
"""blake2b-128 (bloom.digest)."""


@dataclass
class ShardJob:
    texts: list[str | tuple[str, ...]]
    """A record's text; or, for a record with several text fields or none, the tuple of them
    (Record.segments: normalised one by one, judged joined by newlines, as Record.document)."""
    normalize: NormalizeConfig
    filters: list[FilterSpec]
    minhash: M.MinHashParams | None = None
    """Signature parameters when near dedup is on; None skips signatures."""
    skip_repeats: bool = False
    """No signature for a text already seen earlier in this shard: exact dedup drops it anyway
    (only when exact dedup is on; its row stays zero and never reaches near dedup)."""
    media: dict[int, str] = field(default_factory=dict)
    """Position → Record.media() for the records that carry an image or audio reference: it joins
    their exact-dedup digest, they get no MinHash signature (two photos with one caption are not
    near duplicates), and one without text is not judged by the text filters."""


@dataclass
class ShardResult:
    texts: list[str | tuple[str, ...] | None]
    """Normalised text (or tuple) where it differs from the input; None where unchanged (not shipped back)."""
    dropped: list[tuple[str, str] | None]
    """(step, reason) for a dropped document, None for a survivor."""
    scores: list[float | None]
    """The corpus-level filter's score for survivors with text, when one is configured."""
    digests: bytes
    """DIGEST_BYTES per document, in order; zeros for dropped documents."""
    sigs: np.ndarray | None
    """(documents, num_perm) uint32 MinHash signatures; zero rows for dropped documents, skipped repeats and media."""
    raw_sizes: np.ndarray
    """UTF-8 bytes of each input document, int64 (the funnel's byte counts, without re-encoding in the parent)."""
    sizes: np.ndarray
    """UTF-8 bytes of each normalised document, int64 (0: a record without text)."""
    changed: Counter
    pii: Counter
    seconds: Counter


def _joined(t: str | tuple[str, ...]) -> str:
    return t if isinstance(t, str) else "\n".join(t)


def process_shard(job: ShardJob) -> ShardResult:
    from trainforge.data.filters import build_filters, corpus_level
    from trainforge.data.normalize import Normalizer

    seconds: Counter = Counter()
    t0 = time.perf_counter()
    norm = Normalizer(job.normalize)
    cleaned = [norm(t) if isinstance(t, str) else norm.segments(t) for t in job.texts]
    texts = [_joined(t) for t in cleaned]
    seconds["normalize"] += time.perf_counter() - t0
    # whitespace/control-only text becomes empty here: dropped, counted, never passed on (unless the
    # record's content is its image or audio)
    dropped: list[tuple[str, str] | None] = [None if t or i in job.media else ("normalize", "empty_after_normalization")
                                             for i, t in enumerate(texts)]
    scores: list[float | None] = [None] * len(texts)
    for f in build_filters(job.filters):
        t0 = time.perf_counter()
        judged = [i for i, d in enumerate(dropped) if d is None and texts[i]]
        if corpus_level(f):  # the per-document part; the parent fits the threshold over every shard
            for i, s in zip(judged, f.score([texts[i] for i in judged]) if judged else []):
                scores[i] = s
        else:
            for i in judged:
                r = f.reason(texts[i])
                if r:
                    dropped[i] = (f"filter_{f.name}", r)
        seconds[f"filter_{f.name}"] += time.perf_counter() - t0
    alive = [i for i, d in enumerate(dropped) if d is None]

    t0 = time.perf_counter()
    zero = bytes(DIGEST_BYTES)
    digests = [zero] * len(texts)
    for i in alive:
        digests[i] = digest(texts[i] + job.media[i] if i in job.media else texts[i])  # = Record.content_key()
    seconds["dedup_exact"] += time.perf_counter() - t0
    sigs = None
    if job.minhash is not None:
        t0 = time.perf_counter()
        todo = [i for i in alive if i not in job.media] if job.media else alive
        if job.skip_repeats:
            first: set[bytes] = set()
            todo = [i for i in todo if not (digests[i] in first or first.add(digests[i]))]
        sigs = np.zeros((len(texts), job.minhash.num_perm), dtype=np.uint32)
        if todo:
            sigs[todo] = M.signatures([texts[i] for i in todo], job.minhash)
        seconds["dedup_near"] += time.perf_counter() - t0
    back = [t if t != raw else None for t, raw in zip(cleaned, job.texts)]
    return ShardResult(back, dropped, scores, b"".join(digests), sigs, utf8_sizes([_joined(t) for t in job.texts]),
                       utf8_sizes(texts), norm.changed, norm.pii, seconds)


def utf8_sizes(texts: list[str]) -> np.ndarray:
    return np.fromiter((len(t.encode("utf-8", "surrogatepass")) for t in texts), dtype=np.int64, count=len(texts))


def signature_shard(args: tuple[list[str], M.MinHashParams]) -> np.ndarray:
    """Signatures alone (near dedup over records that did not come through `process_shard`)."""
    texts, params = args
    return M.signatures(texts, params)
