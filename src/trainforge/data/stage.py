"""The data stage: read → normalise → filter → dedup → split → decontaminate, with a funnel that reconciles.

Every input record ends in exactly one place, and stats.json proves it:

    read == kept + quarantined + sum(dropped.values())

    data/train.jsonl val.jsonl test.jsonl   kept records, {"id","text","label","source",...}
    data/stats.json                         the funnel: per step docs/bytes in and out, drops by reason, seconds
    data/rejected/<reason>.jsonl            every dropped record, with its step and reason
    data/quarantine/records.jsonl           unreadable records: source file, line, reason, raw
"""

from __future__ import annotations

import random
import shutil
from collections import Counter, defaultdict
from itertools import chain, islice
from pathlib import Path

from trainforge.console import console, progress_bar
from trainforge.data import pipeline as P
from trainforge.data.config import DataConfig
from trainforge.data.executor import make_executor
from trainforge.data.filters import corpus_level
from trainforge.data.io import Record, read_source, write_jsonl
from trainforge.errors import UserError


def stratified_split(records: list[Record], val: float, test: float, stratify: bool, seed: int) -> dict[str, list[Record]]:
    """Seeded split; with stratify, each label is cut in the same proportions."""
    if val < 0 or test < 0 or val + test >= 1:
        raise UserError(f"data.split: val ({val}) + test ({test}) must be ≥ 0 and < 1")
    rng = random.Random(seed)
    groups: dict[str | None, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.label if stratify else None].append(r)
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for label in sorted(groups, key=str):
        g = groups[label]
        rng.shuffle(g)
        n_test, n_val = round(len(g) * test), round(len(g) * val)
        out["test"] += g[:n_test]
        out["val"] += g[n_test : n_test + n_val]
        out["train"] += g[n_test + n_val :]
    for part in out.values():
        rng.shuffle(part)
    return out


CHUNK_DOCS = 100_000
"""Documents per chunk when streaming; memory holds one chunk (plus the exact-dedup seen-set)."""
STREAM_BLOOM_CAPACITY = 10_000_000
"""Bloom filter capacity when streaming and dedup.bloom_capacity is unset (36 MB at p = 1e-6)."""


def _fresh(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)  # a rerun replaces the outputs whole: no stale shards
    out.mkdir(parents=True)


def streamable(cfg: DataConfig) -> bool:
    """Without a global step (near dedup, a corpus-level filter) the pipeline runs chunk by chunk."""
    return cfg.dedup.near is None and not any(corpus_level(s) for s in cfg.filters)


def curate_in_chunks(cfg: DataConfig, out: Path, seed: int, sink, workers: int | None = None,
                     chunk_docs: int = CHUNK_DOCS) -> tuple[int, int, int, P.Funnel]:
    """Bounded memory: read, clean and exact-dedup one chunk at a time; `sink(records, funnel) -> kept`
    writes each chunk's survivors. Returns (read, quarantined, kept, funnel)."""
    _fresh(out)
    funnel = P.Funnel(out, seed)
    executor = make_executor(cfg.executor, workers or cfg.workers, P.WORKER_MODULES)
    store = P.exact_store(cfg, cfg.dedup.bloom_capacity or STREAM_BLOOM_CAPACITY) if cfg.dedup.exact != "off" else None
    items = chain.from_iterable(read_source(s, check_images=True) for s in cfg.sources)
    read = quarantined = kept = 0
    try:
        with progress_bar("curate", total=None, unit="docs") as bar:
            while chunk := list(islice(items, chunk_docs)):
                cur = P.read_all(chunk, funnel, out, bar, cfg, executor)
                cur = P.clean(cur, cfg, funnel, executor)
                cur = P.dedup_exact(cur, cfg, funnel, store)
                read, quarantined, kept = read + cur.read, quarantined + cur.quarantined, kept + sink(cur.records, funnel)
    finally:
        executor.close()
    return read, quarantined, kept, funnel


def curate_sources(cfg: DataConfig, out: Path, seed: int, workers: int | None = None) -> tuple[P.Curated, P.Funnel]:
    """Read, normalise, filter, dedup: everything before the split, in memory (near dedup and a corpus-level
    filter need the whole corpus). Used by the stage and the CLI."""
    _fresh(out)
    funnel = P.Funnel(out, seed)
    executor = make_executor(cfg.executor, workers or cfg.workers, P.WORKER_MODULES)
    try:
        with progress_bar("read", total=None, unit="docs") as bar:
            cur = P.read_all(chain.from_iterable(read_source(s, check_images=True) for s in cfg.sources), funnel, out, bar, cfg, executor)
        cur = P.clean(cur, cfg, funnel, executor)
        cur = P.dedup_exact(cur, cfg, funnel)
        cur = P.dedup_near(cur, cfg, funnel, executor, log=lambda m: console.print(f"[dim]{m}[/]"))
    finally:
        executor.close()
    return cur, funnel


def run_data(ctx) -> dict:
    cfg: DataConfig = ctx.section
    out = ctx.path("data")
    cur, funnel = curate_sources(cfg, out, ctx.config.seed)
    if not cur.records:
        raise UserError("data: no record survived reading and filtering; see data/stats.json, data/quarantine/ and data/rejected/")
    split = stratified_split(cur.records, cfg.split.val, cfg.split.test, cfg.split.stratify, ctx.config.seed)
    if cfg.decontaminate is not None:
        held_out = [r.document for r in split["val"] + split["test"]]
        split["train"] = P.decontaminate(split["train"], held_out, cfg.decontaminate.ngram, funnel, passthrough=held_out)
    for name, part in split.items():
        write_jsonl(out / f"{name}.jsonl", part)
    kept = sum(len(v) for v in split.values())
    stats = funnel.stats(cur.read, kept, cur.quarantined,
                         splits={k: len(v) for k, v in split.items()},
                         labels={k: dict(Counter(r.label for r in v)) for k, v in split.items()})
    from trainforge.files import write_json_atomic

    write_json_atomic(out / "stats.json", stats)
    return {"read": stats["read"], "kept": kept, "quarantined": stats["quarantined"], "dropped": sum(stats["dropped"].values()),
            **{f"{k}_docs": len(v) for k, v in split.items()}}
