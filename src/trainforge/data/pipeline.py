"""The curation pipeline: one definition, any executor, a funnel that reconciles.

    read ──▶ ┌ per shard, in the workers (shard_work.process_shard), one pass: ──────────────────────────┐
    │        │ normalise ─▶ per-document filters… ─▶ [corpus filter's scores] ─▶ exact digest ─▶ MinHash │
    │        └───────────────────────────────────────────────────────────────────────────────────────────┘
    │            global, in this process: [corpus filter: fit, judge] ─▶ exact dedup (digests) ─▶
    │            near dedup (LSH banding + confirmation + union-find over the signatures) ─▶ [decontaminate]
    quarantine/      every drop → rejected/<reason>.jsonl, counted by step and reason

Everything that depends on one document alone runs over shards on the executor, and comes back
compact (changed texts only, digests as one bytes blob, signatures as one uint32 array); the global
decisions (a corpus-level filter's threshold, e.g. the quality percentile; exact and near dedup,
which copy survives) are made once in this process over the whole corpus, so shards never hide a
duplicate from each other and the kept set does not depend on the number of workers. With a process pool, shards leave as they are read (read_all), and
the near-dedup confirmations run in the workers too (benchmarks/data_scaling.py: 1.76× at 2 workers).

What is judged is Record.document (the text-bearing fields joined; the text itself for a text
record). A record without text (an image with a label) passes the text filters unjudged, counted
as `no_text` in each filter step; exact dedup keys it by its content reference; near dedup and
decontamination compare text only, so records with media are left out of near dedup (counted as
`not_compared`) and records without text out of decontamination.

Memory: without a global step (no near dedup, no corpus-level filter) stage.curate_in_chunks runs
read → clean → exact dedup one chunk at a time against a persistent seen-set (bounded by the Bloom
filter); with one, the corpus is held in memory (~7× the JSONL size, measured).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from trainforge.data import bloom as B
from trainforge.data import minhash as M
from trainforge.data.config import DataConfig
from trainforge.data.executor import shard
from trainforge.data.filters import build_filters, check_order, corpus_level
from trainforge.data.io import Quarantined, Record
from trainforge.data.shard_work import DIGEST_BYTES, ShardJob, process_shard, signature_shard
from trainforge.errors import UserError

# --------------------------------------------------------------------------- the funnel


def nbytes(texts: Iterable[str]) -> int:
    # one join + one encode in C: a per-text encode loop was ~10% of the parent's (serial) time
    return len("".join(texts).encode("utf-8", "surrogatepass"))


SUMMED = {"docs_in", "docs_out", "bytes_in", "bytes_out", "seconds", "quarantined", "checked_docs"}
COUNTERS = {"dropped", "changed", "pii_masked", "quarantine_reasons"}


class Funnel:
    """Counts per step; drops go to rejected/<reason>.jsonl as they happen; three sampled examples per reason."""

    def __init__(self, out: Path, seed: int):
        self.out = out
        self.steps: dict[str, dict] = {}
        self.dropped: Counter = Counter()
        self.samples: dict[str, list[str]] = {}
        self.rng = random.Random(seed)
        self._files: dict[str, object] = {}
        (out / "rejected").mkdir(parents=True, exist_ok=True)

    def step(self, name: str, texts_in: list[str], texts_out: list[str], seconds: float, dropped: Counter, **extra) -> None:
        self.merge(name, {"docs_in": len(texts_in), "docs_out": len(texts_out), "bytes_in": nbytes(texts_in),
                          "bytes_out": nbytes(texts_out), "dropped": dict(dropped), "seconds": seconds, **extra})

    def step_sized(self, name: str, sizes_in: np.ndarray, sizes_out: np.ndarray, seconds: float, dropped: Counter, **extra) -> None:
        """`step` from per-document UTF-8 sizes (computed in the workers) instead of texts."""
        self.merge(name, {"docs_in": len(sizes_in), "docs_out": len(sizes_out), "bytes_in": int(sizes_in.sum()),
                          "bytes_out": int(sizes_out.sum()), "dropped": dict(dropped), "seconds": seconds, **extra})

    def merge(self, name: str, entry: dict) -> None:
        """A step seen again (the next chunk of a stream) adds its counts; other fields keep the latest value."""
        old = self.steps.get(name)
        if old is not None:
            for k in SUMMED & entry.keys():
                if isinstance(entry[k], (int, float)) and isinstance(old.get(k), (int, float)):
                    entry[k] = old[k] + entry[k]
            for k in COUNTERS & entry.keys():
                entry[k] = dict(Counter(old.get(k) or {}) + Counter(entry[k]))
        entry["seconds"] = round(entry["seconds"], 3)
        self.steps[name] = entry

    def drop(self, record: Record, reason: str, step: str) -> None:
        import json

        n = self.dropped[reason] = self.dropped[reason] + 1
        # reservoir sampling: each dropped document of a reason is equally likely to be an example
        sample = self.samples.setdefault(reason, [])
        shown = (record.document or record.media().replace("\x00", " ").strip())[:300]  # an image: "image=a.jpg"
        if len(sample) < 3:
            sample.append(shown)
        elif (j := self.rng.randrange(n)) < 3:
            sample[j] = shown
        f = self._files.get(reason)
        if f is None:
            f = self._files[reason] = open(self.out / "rejected" / f"{reason}.jsonl", "w", encoding="utf-8", errors="replace")
        f.write(json.dumps({**record.to_json(), "line": record.line, "step": step, "reason": reason}, ensure_ascii=False, default=str) + "\n")

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def stats(self, read: int, kept: int, quarantined: int, **extra) -> dict:
        self.close()
        if read != kept + quarantined + sum(self.dropped.values()):
            raise AssertionError(f"data funnel does not reconcile: read {read} != kept {kept} + quarantined {quarantined} "
                                 f"+ dropped {sum(self.dropped.values())}")  # our bug, never the user's
        return {"read": read, "kept": kept, "quarantined": quarantined, "dropped": dict(self.dropped),
                "steps": self.steps, "examples": self.samples, **extra}


# --------------------------------------------------------------------------- the pipeline


@dataclass
class Curated:
    records: list[Record]
    read: int
    quarantined: int
    scores: dict[int, float] = field(default_factory=dict)
    """The corpus-level filter's score per record that has one (dedup keep=quality reads perplexities here)."""
    digests: list[bytes] | None = None
    """Exact-dedup digest per record, computed in the workers (None: compute in dedup_exact)."""
    sigs: np.ndarray | None = None
    """(records, num_perm) MinHash signatures from the workers (None: compute in dedup_near)."""
    worker_seconds: Counter = field(default_factory=Counter)
    """Seconds the workers spent on a later step's per-document part (digests, signatures), summed over workers."""
    sizes: np.ndarray | None = None
    """UTF-8 bytes per record, int64, from the workers (the funnel's byte counts)."""
    pending: list | None = None
    """Futures of process_shard over these records in order, when read_all handed them out while reading."""

    def utf8_sizes(self) -> np.ndarray:
        if self.sizes is None:
            from trainforge.data.shard_work import utf8_sizes

            self.sizes = utf8_sizes([r.document for r in self.records])
        return self.sizes

    def subset(self, idx: list[int]) -> "Curated":
        """The records at `idx` (ascending), with their scores, digests and signatures."""
        pos = {k: n for n, k in enumerate(idx)}
        return Curated([self.records[k] for k in idx], self.read, self.quarantined,
                       {pos[k]: v for k, v in self.scores.items() if k in pos},
                       None if self.digests is None else [self.digests[k] for k in idx],
                       None if self.sigs is None else self.sigs[np.asarray(idx, dtype=np.int64)], self.worker_seconds,
                       None if self.sizes is None else self.sizes[np.asarray(idx, dtype=np.int64)])


STREAM_BLOCK = 2_000
"""Documents per shard handed to the pool while the parent is still reading."""


WORKER_MODULES = ("trainforge.data.shard_work", "trainforge.data.filters", "trainforge.data.normalize")
"""What a process pool's workers import as they start (make_executor's preload)."""


OOC_MINHASH_BATCH = 4_000
"""MinHash characters hashed at once when data.max_memory bounds the run (~4 MB of intermediate)."""


def _shard_job(records: list[Record], cfg: DataConfig) -> ShardJob:
    d = cfg.dedup
    # out of core, the hashing intermediate is held small too (OOC_MINHASH_BATCH characters at once)
    batch = {"batch_chars": OOC_MINHASH_BATCH} if getattr(cfg, "max_memory", None) is not None else {}
    params = M.MinHashParams(num_perm=d.num_perm, ngram=d.ngram, **batch) if d.near is not None else None
    texts = [r.text if r.single_text() else tuple(r.segments()) for r in records]
    media = {k: m for k, r in enumerate(records) if (m := r.media())}
    return ShardJob(texts, cfg.normalize, cfg.filters, params, skip_repeats=d.exact != "off", media=media)


def _write_back(record: Record, cleaned: str | tuple[str, ...]) -> None:
    if isinstance(cleaned, str):
        record.text = cleaned
    else:
        record.set_segments(cleaned)


def read_all(items: Iterable, funnel: Funnel, out: Path, progress=None, cfg: DataConfig | None = None, executor=None) -> Curated:
    """Stream the sources; quarantined entries go straight to quarantine/records.jsonl.

    With `cfg` and a pool executor, every STREAM_BLOCK records go to the workers (process_shard) as
    soon as they are read, so reading overlaps the per-document work; `clean` collects the results."""
    import json

    t0 = time.perf_counter()
    submit = getattr(executor, "submit", None) if cfg is not None else None
    if submit is not None:
        check_order(cfg.filters)
    pending, sent = [], 0
    records: list[Record] = []
    reasons: Counter = Counter()
    (out / "quarantine").mkdir(parents=True, exist_ok=True)
    with open(out / "quarantine" / "records.jsonl", "a", encoding="utf-8", errors="replace") as qf:  # a: one stream, many chunks
        for n, item in enumerate(items, start=1):
            if progress is not None and n % 4096 == 0:  # a bar update per record costs more than the read
                progress.advance(4096)
            if isinstance(item, Quarantined):
                reasons[item.reason] += 1
                qf.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
            else:
                records.append(item)
                if submit is not None and len(records) - sent >= STREAM_BLOCK:
                    pending.append(submit(process_shard, _shard_job(records[sent:], cfg)))
                    sent = len(records)
    if submit is not None and sent < len(records):
        pending.append(submit(process_shard, _shard_job(records[sent:], cfg)))
    n_q = sum(reasons.values())
    funnel.merge("read", {"docs_in": len(records) + n_q, "docs_out": len(records), "bytes_in": None,
                          "bytes_out": nbytes(r.document for r in records), "quarantined": n_q,
                          "quarantine_reasons": dict(reasons), "seconds": time.perf_counter() - t0})
    return Curated(records, len(records) + n_q, n_q, pending=pending if submit is not None else None)


def _n_shards(executor, n: int) -> int:
    return 1 if executor.workers == 1 else max(executor.workers * 4, math.ceil(n / 50_000))


@dataclass
class Scanned:
    """The per-document work over a batch of records, joined in record order (process_shard's fields)."""

    dropped: list
    scores: list
    digests: bytes
    sigs: np.ndarray | None
    sizes: np.ndarray
    raw_sizes: np.ndarray
    seconds: Counter
    changed: Counter
    pii: Counter


def scan(cur: Curated, cfg: DataConfig, executor) -> Scanned:
    """Normalise (written back into the records), filter, score, digest and sign every record, per shard
    on the executor; no decision that needs the whole corpus is made here."""
    check_order(cfg.filters)
    records = cur.records
    params = M.MinHashParams(num_perm=cfg.dedup.num_perm, ngram=cfg.dedup.ngram) if cfg.dedup.near is not None else None
    if cur.pending is not None:  # submitted by read_all while reading
        results = [f.result() for f in cur.pending]
    else:
        results = executor.map(process_shard, [_shard_job(list(part), cfg) for part in shard(records, _n_shards(executor, len(records)))])
    for r, t in zip(records, (t for res in results for t in res.texts)):
        if t is not None:
            _write_back(r, t)
    return Scanned(
        dropped=[d for res in results for d in res.dropped], scores=[s for res in results for s in res.scores],
        digests=b"".join(res.digests for res in results),
        sigs=np.concatenate([res.sigs for res in results]) if params is not None and results else None,
        sizes=np.concatenate([res.sizes for res in results]) if results else np.zeros(0, np.int64),
        raw_sizes=np.concatenate([res.raw_sizes for res in results]) if results else np.zeros(0, np.int64),
        seconds=sum((res.seconds for res in results), Counter()), changed=sum((res.changed for res in results), Counter()),
        pii=sum((res.pii for res in results), Counter()))


def clean(cur: Curated, cfg: DataConfig, funnel: Funnel, executor) -> Curated:
    """Normalise and filter (per shard), then fit and apply a corpus-level filter (global)."""
    records = cur.records
    s = scan(cur, cfg, executor)
    blob = s.digests
    digests = [blob[k : k + DIGEST_BYTES] for k in range(0, len(blob), DIGEST_BYTES)]
    sigs, sizes, raw_sizes, dropped, scores = s.sigs, s.sizes, s.raw_sizes, s.dropped, s.scores
    seconds, changed, pii = s.seconds, s.changed, s.pii
    alive, empty = [], Counter()
    for i, d in enumerate(dropped):
        if d is not None and d[0] == "normalize":
            empty[d[1]] += 1
            funnel.drop(records[i], d[1], "normalize")
        else:
            alive.append(i)
    funnel.step_sized("normalize", raw_sizes, sizes[alive], seconds["normalize"], empty, changed=dict(changed), pii_masked=dict(pii))

    for step in build_filters(cfg.filters):
        name = f"filter_{step.name}"
        reasons: Counter = Counter()
        survivors = []
        extra: dict = {}
        if corpus_level(step):  # its threshold over what the earlier steps kept, then each document against it
            step.fit([scores[i] for i in alive if scores[i] is not None])
            for i in alive:
                if scores[i] is not None and (reason := step.reason(scores[i])):
                    dropped[i] = (name, reason)
            extra = step.summary()
        for i in alive:
            if dropped[i] is not None and dropped[i][0] == name:
                reasons[dropped[i][1]] += 1
                funnel.drop(records[i], dropped[i][1], name)
            else:
                survivors.append(i)
        if no_text := int((sizes[alive] == 0).sum()):  # passed unjudged: nothing for a text filter to read
            extra["no_text"] = no_text
        funnel.step_sized(name, sizes[alive], sizes[survivors], seconds[name], reasons, **extra)
        alive = survivors
    every = Curated(records, cur.read, cur.quarantined, {i: s for i, s in enumerate(scores) if s is not None}, digests, sigs,
                    Counter({k: v for k, v in seconds.items() if k in ("dedup_exact", "dedup_near")}), sizes)
    return every.subset(alive)


def exact_store(cfg: DataConfig, expected_docs: int):
    """The seen-set of exact dedup: a Bloom filter (loaded from bloom_path when it exists) or exact hashes."""
    d = cfg.dedup
    if d.exact == "bloom":
        return B.BloomFilter.open_or_create(Path(d.bloom_path) if d.bloom_path else None,
                                            d.bloom_capacity or max(expected_docs, 1), d.bloom_fp)
    return B.ExactHashSet()


def dedup_exact(cur: Curated, cfg: DataConfig, funnel: Funnel, store=None) -> Curated:
    """Drop texts seen before (in this batch, an earlier chunk, or an earlier run through bloom_path)."""
    d = cfg.dedup
    if d.exact == "off":
        return cur
    t0 = time.perf_counter()
    records = cur.records
    digests = cur.digests if cur.digests is not None else [B.digest(r.content_key()) for r in records]
    extra: dict = {"mode": d.exact}
    path = Path(d.bloom_path) if d.bloom_path else None
    store = store if store is not None else exact_store(cfg, len(records))
    seen_before_run = getattr(store, "inserted_at_open", getattr(store, "inserted", 0))
    dup = store.seen_before(digests)
    labels: dict[bytes, set] = {}
    if d.drop_label_conflicts and any(r.label is not None for r in records):
        for r, h in zip(records, digests):
            labels.setdefault(h, set()).add(r.label)
    kept, kept_idx, reasons = [], [], Counter()
    for k, (r, h, is_dup) in enumerate(zip(records, digests, dup)):
        reason = "exact_duplicate" if is_dup else ("label_conflict" if len(labels.get(h, ())) > 1 else None)
        if reason:
            reasons[reason] += 1
            funnel.drop(r, reason, "dedup_exact")
        else:
            kept.append(r)
            kept_idx.append(k)
    if d.exact == "bloom":
        extra["bloom"] = {"bits": store.m, "bytes": store.nbytes, "hashes": store.k, "capacity": store.capacity,
                          "optimal_bytes": math.ceil(-store.capacity * math.log(store.fp_rate) / math.log(2) ** 2 / 8),
                          "fp_target": store.fp_rate, "fp_expected": store.expected_fp_rate(),
                          "fp_measured": store.measured_fp_rate(), "inserted_before_this_run": seen_before_run,
                          "inserted": store.inserted, "path": str(path) if path else None}
        if path is not None:
            store.save(path)
    sizes = cur.utf8_sizes()
    funnel.step_sized("dedup_exact", sizes, sizes[kept_idx], time.perf_counter() - t0 + cur.worker_seconds["dedup_exact"],
                      reasons, **extra)
    return cur.subset(kept_idx)


def dedup_near(cur: Curated, cfg: DataConfig, funnel: Funnel, executor, log=print) -> Curated:
    d = cfg.dedup
    if d.near is None:
        return cur
    if not 0 < d.near <= 1:
        raise UserError(f"data.dedup.near: a Jaccard threshold in (0, 1], got {d.near}")
    t0 = time.perf_counter()
    docs = [r.document for r in cur.records]
    # text similarity only: two photos with the same caption are not near duplicates
    compare = [i for i, r in enumerate(cur.records) if not r.media()]
    everyone = len(compare) == len(docs)
    texts = docs if everyone else [docs[i] for i in compare]
    sigs = cur.sigs if everyone or cur.sigs is None else cur.sigs[np.asarray(compare, dtype=np.int64)]
    # the workers' signatures (clean), unless a row is missing: a repeat they skipped reaches here only
    # when exact dedup did not run before this step
    if sigs is None or sigs.shape[1] != d.num_perm or not sigs.any(axis=1).all():
        params = M.MinHashParams(num_perm=d.num_perm, ngram=d.ngram)
        parts = shard(texts, _n_shards(executor, len(texts)))
        sigs = np.concatenate(executor.map(signature_shard, [(list(p), params) for p in parts])) if texts else np.empty((0, d.num_perm), np.uint32)
    bands, rows = M.choose_bands_rows(d.near, d.num_perm)
    curve = M.s_curve(bands, rows)
    log(f"near-dup: threshold {d.near}, {bands} bands × {rows} rows; P(candidate | Jaccard) = "
        + ", ".join(f"{j}: {p:.3f}" for j, p in curve.items()))
    clusters, info = M.near_duplicate_clusters(texts, sigs, d.near, bands, rows, d.ngram, executor)
    if not everyone:
        clusters = [[compare[k] for k in c] for c in clusters]
        info["not_compared"] = len(docs) - len(compare)
    if d.keep == "quality" and not cur.scores:
        raise UserError("data.dedup.keep: 'quality' needs a quality filter in data.filters")
    scores = [-cur.scores.get(i, math.inf) for i in range(len(docs))]  # lower perplexity is better
    drop = set()
    for c in clusters:
        survivor = M.keep_one(c, d.keep, docs, scores)
        drop.update(i for i in c if i != survivor)
    kept, kept_idx, reasons = [], [], Counter()
    for i, r in enumerate(cur.records):
        if i in drop:
            reasons["near_duplicate"] += 1
            funnel.drop(r, "near_duplicate", "dedup_near")
        else:
            kept.append(r)
            kept_idx.append(i)
    sizes = cur.utf8_sizes()
    funnel.step_sized("dedup_near", sizes, sizes[kept_idx], time.perf_counter() - t0 + cur.worker_seconds["dedup_near"],
                      reasons, threshold=d.near, bands=bands, rows=rows, s_curve=curve, **info)
    return cur.subset(kept_idx)


def decontaminate(records: list[Record], reference: list[str], n: int, funnel: Funnel, step: str = "decontaminate",
                  passthrough: list[str] = ()) -> list[Record]:
    """Drop records sharing an n-gram with the reference texts. `passthrough`: texts that go through
    the step untouched (the val/test documents themselves), counted so the funnel stays continuous."""
    from trainforge.data.decontaminate import contaminated

    t0 = time.perf_counter()
    docs = [r.document for r in records]
    judged = [k for k, t in enumerate(docs) if t]  # a record without text overlaps nothing
    hit = np.zeros(len(docs), dtype=bool)
    hit[judged] = contaminated([docs[k] for k in judged], [t for t in reference if t], n)
    kept = []
    for r, h in zip(records, hit):
        if h:
            funnel.drop(r, "contaminated", step)
        else:
            kept.append(r)
    extra = {"no_text": len(docs) - len(judged)} if len(judged) < len(docs) else {}
    funnel.step(step, docs + list(passthrough), [r.document for r in kept] + list(passthrough),
                time.perf_counter() - t0, Counter({"contaminated": int(hit.sum())}) if hit.any() else Counter(),
                ngram=n, reference_docs=len(reference), checked_docs=len(records), **extra)
    return kept
