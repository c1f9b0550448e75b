"""Curation of corpora larger than memory: the in-memory pipeline's decisions, made from files on disk.

    scan     per chunk of the input (sized from the budget): read → normalise → per-document filters →
             the corpus filter's scores → digest → MinHash (pipeline.scan, on the executor), then to disk:
             the records (pickled), per-document arrays, digests, signatures, the documents' text
             + the corpus filter's scores into a KLL quantile sketch                      chunks/<k>/
    filters  the corpus-level threshold (exact when the scores fit a sixth of the budget, else the sketch),
             each document's fate at normalise and at every filter                          fates-filter
    exact    (digest, index) of the survivors hashed into partitions; each partition sorted on its own:
             the first index of a digest survives (label conflicts as in memory)            fates-exact
    near     per band, (band key, index) hashed into partitions; each partition sorted: neighbours with
             equal keys are candidate pairs (the same chain as minhash.candidate_pairs), written to disk;
             then the pairs in order, confirmed by exact Jaccard reading only the two documents (or equal
             signatures), union-find over the indices (a memory-mapped parent array); the cluster's
             survivor by data.dedup.keep                                                     fates-near
    write    one streaming pass: every record kept (to the sink) or dropped with its step and reason

Each stage leaves a marker in the work directory (DIR/data.work/, beside data/): a killed run started
again with the same inputs and config skips the finished stages (and, in scan, the finished chunks),
and the directory is removed when the run ends. What is in memory at once: one chunk (records,
arrays), one partition, the union-find parent (8 bytes a document, memory-mapped) and the edges of one
partition. Exact dedup is exact here in both modes: a Bloom filter (dedup.exact: bloom) is consulted
only for what earlier runs inserted (dedup.bloom_path).

The kept set, the funnel's counts and every drop reason equal the in-memory path's (tests/data/
test_outofcore.py) when the corpus filter's threshold is computed exactly; from the sketch the
threshold is within its rank error (normalized_rank_error, about 0.7% at k = 400; the funnel records it).
"""

from __future__ import annotations

import hashlib
from array import array
import json
import math
import os
import pickle
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from trainforge.data import minhash as M
from trainforge.data import pipeline as P
from trainforge.data.config import DataConfig
from trainforge.data.filters import build_filters, corpus_level
from trainforge.data.io import Record, read_source
from trainforge.data.shard_work import DIGEST_BYTES
from trainforge.errors import UserError

FORMAT = 1
"""Version of the work directory's layout: a directory from another version is never resumed."""


def parse_size(value: str | int | None, key: str = "data.max_memory") -> int | None:
    """'2GB', '512MiB', '300M', 10**9 → bytes (decimal units for GB/MB/KB, binary for GiB/MiB/KiB)."""
    if value is None or isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", str(value))
    if not m:
        raise UserError(f"{key}: {value!r} is not a size; write e.g. 2GB, 512MiB or a number of bytes")
    number, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    power = " KMGT".index(unit) if unit else 0
    return int(number * (1024 if binary else 1000) ** power)


@dataclass(frozen=True)
class Budget:
    """How the limit is spent: the process itself (interpreter, numpy, the pipeline's modules) is `base`;
    a chunk of input holds about 6× its bytes at its peak (records, normalised copies, signatures),
    a partition 2× its bytes while it sorts."""

    limit: int
    base: int = 80 << 20
    chunk: int | None = None
    """Input bytes per chunk (default: a twelfth of what the process leaves free); tests make it tiny."""
    partition: int | None = None
    """Bytes per partition (default: a sixth of what is free)."""

    def __post_init__(self):
        if self.chunk is None and self.limit < self.base + (16 << 20):
            raise UserError(f"data.max_memory: {self.limit / 2**20:.0f} MiB leaves nothing for data beside the process itself "
                            f"(~{self.base / 2**20:.0f} MiB); give at least {(self.base + (64 << 20)) / 2**20:.0f} MiB")

    @property
    def free(self) -> int:
        return self.limit - self.base

    @property
    def chunk_bytes(self) -> int:
        return self.chunk or max(1 << 20, self.free // 12)

    @property
    def partition_bytes(self) -> int:
        return self.partition or max(1 << 20, self.free // 6)

    def partitions(self, total_bytes: int) -> int:
        return max(1, math.ceil(total_bytes / self.partition_bytes))


# --------------------------------------------------------------------------- the work directory


class Work:
    """DIR/data.work/: stage markers (with the fingerprint of inputs + config), chunk files, partitions."""

    def __init__(self, root: Path, fingerprint: str):
        self.root = root
        self.fingerprint = fingerprint
        state = root / "state.json"
        if root.exists():
            old = json.loads(state.read_text()) if state.is_file() else {}
            if old.get("fingerprint") != fingerprint or old.get("format") != FORMAT:
                shutil.rmtree(root)  # other inputs or config: nothing to resume
        root.mkdir(parents=True, exist_ok=True)
        if not state.is_file():
            self._write({"fingerprint": fingerprint, "format": FORMAT, "done": {}})

    def _write(self, state: dict) -> None:
        tmp = self.root / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.root / "state.json")

    def state(self) -> dict:
        return json.loads((self.root / "state.json").read_text())

    def done(self, stage: str) -> dict | None:
        return self.state()["done"].get(stage)

    def finish(self, stage: str, info: dict) -> None:
        state = self.state()
        state["done"][stage] = info
        self._write(state)

    def chunk(self, k: int) -> Path:
        return self.root / "chunks" / f"{k:06d}"


def fingerprint(cfg: DataConfig, seed: int) -> str:
    """The config and every input file's size and mtime: a resumed run must see the same inputs."""
    h = hashlib.sha256(cfg.model_dump_json().encode())
    h.update(str(seed).encode())
    for s in cfg.sources:
        p = Path(s.path)
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                st = f.stat()
                h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------- helpers


def _byte_chunks(items, chunk_bytes: int):
    """Consecutive items until their text reaches chunk_bytes (deterministic for the same input)."""
    it = iter(items)
    while True:
        chunk, size = [], 0
        for item in it:
            chunk.append(item)
            size += len(getattr(item, "raw", None) or "") if not isinstance(item, Record) else len(item.document) * 3 + 64
            if size >= chunk_bytes:
                break
        if not chunk:
            return
        yield chunk


class _Codes:
    """Strings ↔ small ints (reasons, labels), saved with the work."""

    def __init__(self, values=()):
        self.values = list(values)
        self.index = {v: i for i, v in enumerate(self.values)}

    def code(self, value) -> int:
        if value is None:
            return -1
        if value not in self.index:
            self.index[value] = len(self.values)
            self.values.append(value)
        return self.index[value]


@dataclass
class Chunks:
    """Where each chunk's documents sit in the global index (survivors of reading, in input order)."""

    starts: np.ndarray  # int64, len = chunks + 1

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    def of(self, g: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, g, side="right") - 1


class Documents:
    """Random access to the normalised documents by global index, reading only the bytes asked for."""

    def __init__(self, work: Work, chunks: Chunks):
        self.work, self.chunks = work, chunks
        self._open: dict[int, tuple] = {}

    def _files(self, k: int):
        if k not in self._open:
            if len(self._open) > 64:
                self._open.clear()
            d = self.work.chunk(k)
            self._open[k] = (np.load(d / "offsets.npy"), open(d / "docs.bin", "rb"))
        return self._open[k]

    def get(self, g: int) -> str:
        k = int(self.chunks.of(np.asarray([g]))[0])
        offs, f = self._files(k)
        i = g - int(self.chunks.starts[k])
        f.seek(int(offs[i]))
        return f.read(int(offs[i + 1] - offs[i])).decode("utf-8", "surrogatepass")

    def close(self) -> None:
        for _, f in self._open.values():
            f.close()
        self._open.clear()


# --------------------------------------------------------------------------- stage 1: scan


def _scan(cfg: DataConfig, work: Work, funnel_read: dict, executor, budget: Budget, progress, log) -> dict:
    """Every chunk through the per-document work, to disk. Returns the scan summary (chunk starts, sketch)."""
    from datasketches import kll_doubles_sketch

    steps = [f"filter_{f.name}" for f in build_filters(cfg.filters)]
    corpus_idx = next((i for i, f in enumerate(build_filters(cfg.filters)) if corpus_level(f)), None)
    reasons = _Codes()
    labels = _Codes()
    near = cfg.dedup.near is not None
    (work.root / "chunks").mkdir(exist_ok=True)
    items = chain.from_iterable(read_source(s) for s in cfg.sources)
    starts = [0]
    sketch = kll_doubles_sketch(400)
    n_scored = 0
    k = 0
    for chunk in _byte_chunks(items, budget.chunk_bytes):
        d = work.chunk(k)
        meta_path = d / "meta.json"
        if meta_path.is_file():  # finished before the run was stopped: its counts are on disk
            meta = json.loads(meta_path.read_text())
            reasons = _Codes(meta["reasons"])
            labels = _Codes(meta["labels"])
            sketch = kll_doubles_sketch.deserialize(bytes.fromhex(meta["sketch"])) if meta["sketch"] else sketch
            n_scored = meta["n_scored"]
            starts.append(starts[-1] + meta["records"])
            k += 1
            continue
        shutil.rmtree(d, ignore_errors=True)  # a chunk the stop interrupted starts again whole
        d.mkdir(parents=True)
        cur = P.read_all(chunk, funnel_read["funnel"], d, progress, cfg, executor)  # quarantine → chunk dir
        results = P.scan(cur, cfg, executor)
        records = cur.records
        n = len(records)
        fail_step = np.full(n, -1, np.int16)
        fail_reason = np.full(n, -1, np.int16)
        for i, dr in enumerate(results.dropped):
            if dr is not None:
                fail_step[i] = 0 if dr[0] == "normalize" else 1 + steps.index(dr[0])
                fail_reason[i] = reasons.code(dr[1])
        score = np.array([np.nan if s is None else s for s in results.scores], dtype=np.float64) if n else np.zeros(0)
        if corpus_idx is not None and n:  # the corpus filter fits over documents alive when it runs
            fits = ((fail_step == -1) | (fail_step > corpus_idx + 1)) & ~np.isnan(score)
            if fits.any():
                sketch.update(score[fits])
                n_scored += int(fits.sum())
        docs = [r.document for r in records]
        encoded = [t.encode("utf-8", "surrogatepass") for t in docs]
        offsets = np.zeros(n + 1, np.int64)
        if n:
            np.cumsum([len(b) for b in encoded], out=offsets[1:])
        with open(d / "docs.bin", "wb") as f:
            f.write(b"".join(encoded))
        np.save(d / "offsets.npy", offsets)
        np.savez(d / "arrays.npz", fail_step=fail_step, fail_reason=fail_reason, score=score,
                 size=results.sizes, raw_size=results.raw_sizes,
                 chars=np.fromiter((len(t) for t in docs), np.int64, count=n),
                 media=np.fromiter((bool(r.media()) for r in records), bool, count=n),
                 label=np.fromiter((labels.code(r.label) for r in records), np.int32, count=n))
        (d / "digests.bin").write_bytes(results.digests)
        if near:
            sigs = results.sigs if results.sigs is not None else np.zeros((n, cfg.dedup.num_perm), np.uint32)
            np.ascontiguousarray(sigs, dtype=np.uint32).tofile(d / "sigs.bin")
        with open(d / "records.pkl", "wb") as f:
            pickle.dump(records, f, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {"records": n, "read": cur.read, "quarantined": cur.quarantined, "reasons": reasons.values,
                "labels": labels.values, "seconds": dict(results.seconds), "changed": dict(results.changed),
                "pii": dict(results.pii), "n_scored": n_scored,
                "sketch": sketch.serialize().hex() if n_scored else "",
                "read_step": funnel_read["funnel"].steps.get("read")}
        funnel_read["funnel"].steps.pop("read", None)  # each chunk's read counts are summed from the metas
        tmp = d / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, default=str))
        os.replace(tmp, meta_path)  # last: the chunk is complete
        starts.append(starts[-1] + n)
        k += 1
    return {"chunks": k, "starts": starts, "reasons": reasons.values, "labels": labels.values,
            "n_scored": n_scored, "sketch": sketch.serialize().hex() if n_scored else ""}


def _metas(work: Work, n_chunks: int):
    for k in range(n_chunks):
        yield k, json.loads((work.chunk(k) / "meta.json").read_text())


def _arrays(work: Work, k: int) -> dict:
    with np.load(work.chunk(k) / "arrays.npz") as z:
        return {name: z[name] for name in z.files}


# --------------------------------------------------------------------------- stage 2: the filters' verdict


def _filters(cfg: DataConfig, work: Work, scan: dict, budget: Budget) -> dict:
    """Each document's fate at normalise and the filters: (step code, reason code); the corpus threshold."""
    filters = build_filters(cfg.filters)
    corpus_idx = next((i for i, f in enumerate(filters) if corpus_level(f)), None)
    info: dict = {}
    threshold_step = None
    if corpus_idx is not None:
        step = filters[corpus_idx]
        n = scan["n_scored"]
        if n * 8 <= budget.free // 6:  # exact: the same threshold as in memory
            scores = []
            for k in range(scan["chunks"]):
                a = _arrays(work, k)
                fits = ((a["fail_step"] == -1) | (a["fail_step"] > corpus_idx + 1)) & ~np.isnan(a["score"])
                scores.extend(a["score"][fits].tolist())
            step.fit(scores)
            info["threshold_from"] = "exact"
        else:
            from datasketches import kll_doubles_sketch

            sketch = kll_doubles_sketch.deserialize(bytes.fromhex(scan["sketch"]))
            fit_from_sketch(step, sketch)
            info["threshold_from"] = f"KLL sketch (k=400, rank error ±{sketch.normalized_rank_error(False):.4f})"
        info["summary"] = step.summary()
        threshold_step = step
    reasons = _Codes(scan["reasons"])
    for k in range(scan["chunks"]):
        a = _arrays(work, k)
        fstep, freason = a["fail_step"].copy(), a["fail_reason"].copy()
        if threshold_step is not None:
            # the corpus filter runs after the filters before it: a document they dropped is not judged,
            # one a later filter would drop is dropped here first (as in pipeline.clean)
            judged = ((fstep == -1) | (fstep > corpus_idx + 1)) & ~np.isnan(a["score"])
            for i in np.flatnonzero(judged).tolist():
                if (reason := threshold_step.reason(float(a["score"][i]))):
                    fstep[i], freason[i] = corpus_idx + 1, reasons.code(reason)
        np.savez(work.chunk(k) / "fates-filter.npz", step=fstep, reason=freason)
    info["reasons"] = reasons.values
    return info


def fit_from_sketch(step, sketch) -> None:
    """The corpus filter's threshold from a quantile sketch instead of every score (QualityStep: the
    perplexity at the 100 − drop_percentile percentile)."""
    pct = getattr(getattr(step, "cfg", None), "drop_percentile", None)
    if pct is None or not hasattr(step, "threshold"):
        raise UserError(f"data.max_memory: the corpus-level filter {step.name!r} cannot take its threshold from a "
                        f"quantile sketch; raise data.max_memory so its scores fit, or remove data.max_memory")
    step.threshold = math.inf if pct <= 0 or sketch.is_empty() else float(sketch.get_quantile(1 - pct / 100.0))


# --------------------------------------------------------------------------- stage 3: exact dedup


def _alive_after_filters(work: Work, k: int) -> np.ndarray:
    with np.load(work.chunk(k) / "fates-filter.npz") as z:
        return z["step"] == -1


def _exact(cfg: DataConfig, work: Work, scan: dict, chunks: Chunks, budget: Budget) -> dict:
    d = cfg.dedup
    n_alive = sum(int(_alive_after_filters(work, k).sum()) for k in range(scan["chunks"]))
    parts = budget.partitions(n_alive * (DIGEST_BYTES + 12))
    pdir = work.root / "exact"
    shutil.rmtree(pdir, ignore_errors=True)
    pdir.mkdir()
    files = [open(pdir / f"{p:05d}.bin", "wb") for p in range(parts)]
    rec = np.dtype([("digest", f"S{DIGEST_BYTES}"), ("g", "<i8"), ("label", "<i4")])
    try:
        for k in range(scan["chunks"]):
            alive = np.flatnonzero(_alive_after_filters(work, k))
            blob = np.frombuffer((work.chunk(k) / "digests.bin").read_bytes(), dtype=f"S{DIGEST_BYTES}")
            a = _arrays(work, k)
            rows = np.empty(len(alive), rec)
            rows["digest"], rows["g"], rows["label"] = blob[alive], chunks.starts[k] + alive, a["label"][alive]
            # the partition from the digest's first 8 bytes (blake2b: uniform)
            p = np.frombuffer(rows["digest"].tobytes(), dtype="<u8").reshape(len(alive), -1)[:, 0] % parts if len(alive) else []
            for q in range(parts):
                files[q].write(rows[p == q].tobytes())
    finally:
        for f in files:
            f.close()
    spilled = _bytes_under(pdir)
    dup = np.zeros(chunks.total, np.int8)  # 0 kept, 1 exact_duplicate, 2 label_conflict
    conflicts = d.drop_label_conflicts
    for q in range(parts):
        rows = np.fromfile(pdir / f"{q:05d}.bin", dtype=rec)
        if not len(rows):
            continue
        rows = rows[np.lexsort((rows["g"], rows["digest"]))]
        first = np.ones(len(rows), bool)
        first[1:] = rows["digest"][1:] != rows["digest"][:-1]
        dup[rows["g"][~first]] = 1
        if conflicts:  # a digest with more than one distinct label: its first copy is a label conflict
            group = np.cumsum(first) - 1
            lab = rows["label"]
            has = lab >= 0
            if has.any():
                lo = np.full(group[-1] + 1, np.iinfo(np.int32).max)
                hi = np.full(group[-1] + 1, -2)
                np.minimum.at(lo, group[has], lab[has])
                np.maximum.at(hi, group[has], lab[has])
                # None counts as a label of its own (as in memory: a set of labels, None among them)
                has_none = np.zeros(group[-1] + 1, bool)
                np.logical_or.at(has_none, group[~has], True)
                distinct = (hi > lo) | ((hi >= 0) & has_none)
                bad_first = first & distinct[group]
                dup[rows["g"][bad_first]] = 2
        del rows
    shutil.rmtree(pdir, ignore_errors=True)
    bloom_info = None
    if d.exact == "bloom" and d.bloom_path:  # what earlier runs saw: only the persistent filter knows
        bloom_info = _bloom_against_earlier_runs(cfg, work, scan, chunks, dup)
    np.save(work.root / "fates-exact.npy", dup)
    return {"partitions": parts, "bloom": bloom_info, "bytes_spilled": spilled}


def _bloom_against_earlier_runs(cfg, work, scan, chunks, dup) -> dict:
    from trainforge.data import bloom as B

    d = cfg.dedup
    store = B.BloomFilter.open_or_create(Path(d.bloom_path), d.bloom_capacity or max(chunks.total, 1), d.bloom_fp)
    before = getattr(store, "inserted_at_open", store.inserted)
    for k in range(scan["chunks"]):
        alive = np.flatnonzero(_alive_after_filters(work, k))
        g = chunks.starts[k] + alive
        first = g[dup[g] == 0]
        if not len(first):
            continue
        blob = (work.chunk(k) / "digests.bin").read_bytes()
        local = (first - chunks.starts[k]).tolist()
        digests = [blob[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES] for i in local]
        seen = store.seen_before(digests)
        dup[first[np.asarray(seen, bool)]] = 1
    store.save(Path(d.bloom_path))
    return {"bits": store.m, "bytes": store.nbytes, "hashes": store.k, "capacity": store.capacity,
            "optimal_bytes": math.ceil(-store.capacity * math.log(store.fp_rate) / math.log(2) ** 2 / 8),
            "fp_target": store.fp_rate, "fp_expected": store.expected_fp_rate(), "fp_measured": store.measured_fp_rate(),
            "inserted_before_this_run": before, "inserted": store.inserted, "path": d.bloom_path}


# --------------------------------------------------------------------------- stage 4: near dedup


def _near(cfg: DataConfig, work: Work, scan: dict, chunks: Chunks, budget: Budget, log) -> dict:
    d = cfg.dedup
    if not 0 < d.near <= 1:
        raise UserError(f"data.dedup.near: a Jaccard threshold in (0, 1], got {d.near}")
    if d.keep == "quality" and not scan["n_scored"]:
        raise UserError("data.dedup.keep: 'quality' needs a quality filter in data.filters")
    bands, rows = M.choose_bands_rows(d.near, d.num_perm)
    curve = M.s_curve(bands, rows)
    log(f"near-dup (out of core): threshold {d.near}, {bands} bands × {rows} rows; P(candidate | Jaccard) = "
        + ", ".join(f"{j}: {p:.3f}" for j, p in curve.items()))
    exact_dup = np.load(work.root / "fates-exact.npy")
    compare_n, not_compared = 0, 0
    for k in range(scan["chunks"]):
        alive = _alive_after_filters(work, k)
        g = chunks.starts[k] + np.flatnonzero(alive)
        alive_idx = g[exact_dup[g] == 0]
        media = _arrays(work, k)["media"][alive_idx - chunks.starts[k]]
        compare_n += int((~media).sum())
        not_compared += int(media.sum())
    parts = budget.partitions(compare_n * 16)
    ndir = work.root / "near"
    shutil.rmtree(ndir, ignore_errors=True)
    ndir.mkdir()
    rec = np.dtype([("key", "<u8"), ("g", "<i8")])
    files = {(b, q): open(ndir / f"b{b:03d}-{q:05d}.bin", "wb") for b in range(bands) for q in range(parts)}
    try:
        for k in range(scan["chunks"]):
            alive = _alive_after_filters(work, k)
            local = np.flatnonzero(alive)
            g = chunks.starts[k] + local
            keep = exact_dup[g] == 0
            media = _arrays(work, k)["media"]
            keep &= ~media[local]
            local, g = local[keep], g[keep]
            if not len(local):
                continue
            sigs = np.fromfile(work.chunk(k) / "sigs.bin", dtype=np.uint32).reshape(-1, d.num_perm)[local]
            for b in range(bands):
                key = M.band_key(sigs, b, rows)
                part = (key >> np.uint64(40)) % np.uint64(parts)
                rows_ = np.empty(len(g), rec)
                rows_["key"], rows_["g"] = key, g
                for q in range(parts):
                    files[(b, q)].write(rows_[part == q].tobytes())
    finally:
        for f in files.values():
            f.close()
    spilled = _bytes_under(ndir)
    # candidate pairs: within a band, neighbours in (key, index) order with equal keys — the chain
    # minhash.candidate_pairs makes over the whole corpus (its stable argsort orders ties by index)
    epath = ndir / "edges.bin"
    n_edges_raw = 0
    with open(epath, "wb") as ef:
        for (b, q) in files:
            path = ndir / f"b{b:03d}-{q:05d}.bin"
            r = np.fromfile(path, dtype=rec)
            path.unlink()
            if len(r) < 2:
                continue
            r = r[np.lexsort((r["g"], r["key"]))]
            same = np.flatnonzero(r["key"][1:] == r["key"][:-1])
            if len(same):
                i, j = r["g"][same], r["g"][same + 1]
                e = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1).astype(np.int64)
                ef.write(e.tobytes())
                n_edges_raw += len(e)
    # unique pairs in sorted order, partitioned by the first index so each partition sorts on its own
    eparts = budget.partitions(n_edges_raw * 16)
    bounds = np.linspace(0, chunks.total, eparts + 1).astype(np.int64)
    ordered = ndir / "edges-sorted.bin"
    n_pairs = 0
    # read, not memory-mapped: mapped pages stay resident and count against the limit
    step = max(1, budget.partition_bytes // 16)
    with open(ordered, "wb") as of:
        for q in range(eparts):
            sel = []
            for s in range(0, n_edges_raw, step):  # a pass over the edges per partition, a block at a time
                block = np.fromfile(epath, dtype=np.int64, count=2 * step, offset=16 * s).reshape(-1, 2)
                sel.append(block[(block[:, 0] >= bounds[q]) & (block[:, 0] < bounds[q + 1])])
            part = np.concatenate(sel) if sel else np.zeros((0, 2), np.int64)
            if len(part):
                part = np.unique(part, axis=0)
                of.write(part.tobytes())
                n_pairs += len(part)
    spilled += epath.stat().st_size + ordered.stat().st_size + 8 * chunks.total
    epath.unlink()
    # confirmation and union-find, in the order of the in-memory loop
    parent = np.arange(max(chunks.total, 1), dtype=np.int64)  # 8 bytes a document, the one array of corpus size

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = int(parent[root])
        while parent[x] != root:
            parent[x], x = root, int(parent[x])
        return root

    docs = Documents(work, chunks)
    sig_files: dict[int, object] = {}
    row = 4 * d.num_perm

    def sig(g: int) -> bytes:
        k = int(chunks.of(np.asarray([g]))[0])
        if k not in sig_files:
            if len(sig_files) > 64:
                for f in sig_files.values():
                    f.close()
                sig_files.clear()
            sig_files[k] = open(work.chunk(k) / "sigs.bin", "rb")
        f = sig_files[k]
        f.seek(row * (g - int(chunks.starts[k])))
        return f.read(row)

    confirmed = 0
    skip_identical = d.near <= 0.99
    in_cluster = array("q")  # 8 bytes a member, not a Python int each
    for s in range(0, n_pairs, step):
        for i, j in np.fromfile(ordered, dtype=np.int64, count=2 * step, offset=16 * s).reshape(-1, 2).tolist():
            ri, rj = find(i), find(j)
            if ri == rj:
                continue
            same = skip_identical and sig(i) == sig(j)
            if same or M.jaccard(M.shingle_set(docs.get(i), d.ngram), M.shingle_set(docs.get(j), d.ngram)) >= d.near:
                parent[max(ri, rj)] = min(ri, rj)
                confirmed += 1
                in_cluster.append(i)
                in_cluster.append(j)
    for f in sig_files.values():
        f.close()
    # clusters: the members of every union, grouped by root
    members = np.unique(np.frombuffer(in_cluster, np.int64)) if len(in_cluster) else np.zeros(0, np.int64)
    roots = np.fromiter((find(int(m)) for m in members), np.int64, count=len(members))
    order = np.lexsort((members, roots))
    members, roots = members[order], roots[order]
    near_dup = np.zeros(chunks.total, bool)
    n_clusters = 0
    if len(members):
        cut = np.flatnonzero(np.diff(roots)) + 1
        for cluster in np.split(members, cut):
            n_clusters += 1
            cl = cluster.tolist()
            if d.keep == "longest":
                survivor = max(cl, key=lambda g: (len(docs.get(g)), -g))
            elif d.keep == "quality":
                survivor = max(cl, key=lambda g: (-_score(work, chunks, g), -g))
            else:
                survivor = min(cl)
            near_dup[[g for g in cl if g != survivor]] = True
    docs.close()
    np.save(work.root / "fates-near.npy", near_dup)
    shutil.rmtree(ndir, ignore_errors=True)
    info = {"threshold": d.near, "bands": bands, "rows": rows, "s_curve": curve, "candidate_pairs": n_pairs,
            "confirmed_pairs": confirmed, "clusters": n_clusters, "partitions": parts, "bytes_spilled": spilled}
    if not_compared:
        info["not_compared"] = not_compared
    return info


def _score(work: Work, chunks: Chunks, g: int) -> float:
    k = int(chunks.of(np.asarray([g]))[0])
    s = _arrays(work, k)["score"][g - int(chunks.starts[k])]
    return math.inf if np.isnan(s) else float(s)  # lower perplexity is better; none scored: worst


# --------------------------------------------------------------------------- stage 5: write


def _write(cfg: DataConfig, work: Work, scan: dict, chunks: Chunks, filt: dict, exact: dict | None, near: dict | None,
           funnel: P.Funnel, sink, seconds: dict) -> tuple[int, int, int]:
    """The records once more, in input order: each kept (sink) or dropped with its step and reason;
    the funnel's steps in the in-memory path's order, with the same counts."""
    steps = [f"filter_{f.name}" for f in build_filters(cfg.filters)]
    reasons = filt["reasons"]
    exact_dup = np.load(work.root / "fates-exact.npy") if exact is not None else None
    near_dup = np.load(work.root / "fates-near.npy") if near is not None else None
    read = quarantined = kept = 0
    for k, meta in _metas(work, scan["chunks"]):
        d = work.chunk(k)
        read += meta["read"]
        quarantined += meta["quarantined"]
        if meta["read_step"]:
            funnel.merge("read", dict(meta["read_step"]))
        a = _arrays(work, k)
        with np.load(d / "fates-filter.npz") as z:
            fstep, freason = z["step"], z["reason"]
        with open(d / "records.pkl", "rb") as f:
            records: list[Record] = pickle.load(f)
        g0 = int(chunks.starts[k])
        sizes, raw = a["size"], a["raw_size"]
        # normalise, then each filter: what reached it, what left
        reached = np.ones(len(records), bool)
        for code, name in enumerate(["normalize", *steps]):
            out_here = fstep == code
            dropped = Counter(reasons[r] for r in freason[out_here].tolist())
            for i in np.flatnonzero(out_here).tolist():
                funnel.drop(records[i], reasons[freason[i]], name)
            survivors = reached & ~out_here
            extra = {}
            if name == "normalize":
                extra = {"changed": meta["changed"], "pii_masked": meta["pii"]}
                funnel.step_sized(name, raw[reached], sizes[survivors], meta["seconds"].get(name, 0.0), dropped, **extra)
            else:
                if filt.get("summary") is not None and code - 1 == _corpus_index(cfg):
                    extra = dict(filt["summary"])
                if no_text := int((sizes[reached] == 0).sum()):
                    extra["no_text"] = no_text
                funnel.step_sized(name, sizes[reached], sizes[survivors], meta["seconds"].get(name, 0.0), dropped, **extra)
            reached = survivors
        local = np.flatnonzero(reached)
        if exact_dup is not None:
            fate = exact_dup[g0 + local]
            dropped = Counter()
            for i, f_ in zip(local.tolist(), fate.tolist()):
                if f_:
                    reason = "exact_duplicate" if f_ == 1 else "label_conflict"
                    dropped[reason] += 1
                    funnel.drop(records[i], reason, "dedup_exact")
            survivors = local[fate == 0]
            extra = {"mode": cfg.dedup.exact}
            if exact.get("bloom"):
                extra["bloom"] = exact["bloom"]
            funnel.step_sized("dedup_exact", sizes[local], sizes[survivors],
                              meta["seconds"].get("dedup_exact", 0.0) + seconds.get("exact", 0.0) / scan["chunks"], dropped, **extra)
            local = survivors
        if near_dup is not None:
            fate = near_dup[g0 + local]
            for i in local[fate].tolist():
                funnel.drop(records[i], "near_duplicate", "dedup_near")
            survivors = local[~fate]
            funnel.step_sized("dedup_near", sizes[local], sizes[survivors],
                              meta["seconds"].get("dedup_near", 0.0) + seconds.get("near", 0.0) / scan["chunks"],
                              Counter({"near_duplicate": int(fate.sum())}) if fate.any() else Counter(), **near)
            local = survivors
        kept += sink([records[i] for i in local.tolist()], funnel)
    return read, quarantined, kept


def _corpus_index(cfg: DataConfig) -> int | None:
    return next((i for i, f in enumerate(build_filters(cfg.filters)) if corpus_level(f)), None)


# --------------------------------------------------------------------------- the whole


def curate_out_of_core(cfg: DataConfig, out: Path, seed: int, sink, max_memory: int | Budget, workers: int | None = None,
                       log=print, work_dir: Path | None = None) -> tuple[int, int, int, P.Funnel, dict]:
    """Bounded memory, any input size: the stages above over DIR/data.work/. `sink(records, funnel) -> kept`
    receives the survivors chunk by chunk in input order. Returns (read, quarantined, kept, funnel, report)."""
    from trainforge.console import progress_bar
    from trainforge.data.executor import make_executor

    budget = max_memory if isinstance(max_memory, Budget) else Budget(max_memory)
    work = Work(work_dir or out.parent / f"{out.name}.work", fingerprint(cfg, seed))
    if out.exists():
        shutil.rmtree(out)  # the outputs are replaced whole (the work directory beside them is what resumes)
    out.mkdir(parents=True)
    funnel = P.Funnel(out, seed)
    executor = make_executor(cfg.executor, workers or cfg.workers, P.WORKER_MODULES)
    timings: dict[str, float] = {}
    resumed = [s for s in ("scan", "filters", "exact", "near") if work.done(s)]
    try:
        t0 = time.perf_counter()
        scan = work.done("scan")
        if scan is None:
            with progress_bar("scan", total=None, unit="docs") as bar:
                scan = _scan(cfg, work, {"funnel": funnel}, executor, budget, bar, log)
            work.finish("scan", scan)
        timings["scan"] = time.perf_counter() - t0
        chunks = Chunks(np.asarray(scan["starts"], np.int64))
        t0 = time.perf_counter()
        filt = work.done("filters")
        if filt is None:
            filt = _filters(cfg, work, scan, budget)
            work.finish("filters", filt)
        timings["filters"] = time.perf_counter() - t0
        exact = None
        if cfg.dedup.exact != "off":
            t0 = time.perf_counter()
            exact = work.done("exact")
            if exact is None:
                exact = _exact(cfg, work, scan, chunks, budget)
                work.finish("exact", exact)
            timings["exact"] = time.perf_counter() - t0
        else:
            np.save(work.root / "fates-exact.npy", np.zeros(chunks.total, np.int8))
        near = None
        if cfg.dedup.near is not None:
            t0 = time.perf_counter()
            near = work.done("near")
            if near is None:
                near = _near(cfg, work, scan, chunks, budget, log)
                work.finish("near", near)
            timings["near"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        read, quarantined, kept = _write(cfg, work, scan, chunks, filt, exact, near, funnel, sink, timings)
        timings["write"] = time.perf_counter() - t0
        _gather_quarantine(work, scan["chunks"], out)
        spilled = _bytes_under(work.root / "chunks") + sum((x or {}).get("bytes_spilled", 0) for x in (exact, near))
    finally:
        executor.close()
    shutil.rmtree(work.root, ignore_errors=True)
    report = {"max_memory": budget.limit, "chunk_bytes": budget.chunk_bytes, "chunks": scan["chunks"],
              "seconds": {k: round(v, 3) for k, v in timings.items()}, "bytes_spilled": spilled,
              "peak_rss": peak_rss(),
              "threshold_from": filt.get("threshold_from"), "resumed_stages": resumed}
    return read, quarantined, kept, funnel, report


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM (reset by exec, unlike ru_maxrss, which a child keeps
    from the parent it was forked from), ru_maxrss where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _gather_quarantine(work: Work, n_chunks: int, out: Path) -> None:
    (out / "quarantine").mkdir(parents=True, exist_ok=True)
    with open(out / "quarantine" / "records.jsonl", "ab") as dst:
        for k in range(n_chunks):
            src = work.chunk(k) / "quarantine" / "records.jsonl"
            if src.is_file():
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, dst)


def _bytes_under(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def limit_from(cfg: DataConfig) -> int | None:
    return parse_size(getattr(cfg, "max_memory", None))


__all__ = ["curate_out_of_core", "parse_size", "Budget", "limit_from", "fit_from_sketch"]
