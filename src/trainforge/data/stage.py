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


def grow_train_split(cfg: DataConfig, split: dict[str, list[Record]], funnel: P.Funnel, seed: int) -> dict[str, int]:
    """data.augment then data.balance on split["train"] (val and test are read, never written); returns the
    records each added, which the funnel reports beside the records read."""
    added: dict[str, int] = {}
    if cfg.augment is not None:
        from trainforge.data.augment import augment_split

        held_out = [r.document for r in split["val"] + split["test"]]
        ngram = cfg.decontaminate.ngram if cfg.decontaminate is not None else None
        split["train"], added["augment"] = augment_split(split["train"], cfg.augment, funnel, seed, held_out, ngram)
    if cfg.balance is not None:
        from trainforge.data.balance import balance_split

        split["train"], added["balance"] = balance_split(split["train"], cfg.balance, funnel, seed)
    return added


def run_data(ctx) -> dict:
    cfg: DataConfig = ctx.section
    from trainforge.collect.stage import collected_source

    if (collected := collected_source(ctx.config, ctx.path())) is not None:  # the collect stage ran before this one
        cfg = cfg.model_copy(update={"sources": [*cfg.sources, collected]})
    out = ctx.path("data")
    ooc = None
    if cfg.max_memory is not None:  # out of core: the kept records (after dedup) are what the split holds
        from trainforge.data.outofcore import curate_out_of_core, parse_size

        records: list[Record] = []
        read, quarantined, _, funnel, ooc = curate_out_of_core(
            cfg, out, ctx.config.seed, lambda rs, _f: (records.extend(rs), len(rs))[1], parse_size(cfg.max_memory),
            log=lambda m: console.print(f"[dim]{m}[/]"))
        cur = P.Curated(records, read, quarantined)
    else:
        cur, funnel = curate_sources(cfg, out, ctx.config.seed)
    if not cur.records:
        raise UserError("data: no record survived reading and filtering; see data/stats.json, data/quarantine/ and data/rejected/")
    split = stratified_split(cur.records, cfg.split.val, cfg.split.test, cfg.split.stratify, ctx.config.seed)
    if cfg.decontaminate is not None:
        held_out = [r.document for r in split["val"] + split["test"]]
        split["train"] = P.decontaminate(split["train"], held_out, cfg.decontaminate.ngram, funnel, passthrough=held_out)
    if cfg.label_issues is not None:  # on train (and val if asked), after the split so test is never touched
        from trainforge.data.label_issues import handle_label_issues

        split = handle_label_issues(split, cfg.label_issues, funnel, out, ctx.config.seed)
    added = grow_train_split(cfg, split, funnel, ctx.config.seed)  # augment, balance: the training split only
    for name, part in split.items():
        write_jsonl(out / f"{name}.jsonl", part)
    kept = sum(len(v) for v in split.values()) - sum(added.values())  # records added are not records read
    stats = funnel.stats(cur.read, kept, cur.quarantined,
                         splits={k: len(v) for k, v in split.items()},
                         labels={k: dict(Counter(r.label for r in v)) for k, v in split.items()},
                         **({"out_of_core": ooc} if ooc is not None else {}),
                         **({"added": added} if added else {}))
    from trainforge.files import write_json_atomic

    write_json_atomic(out / "stats.json", stats)
    return {"read": stats["read"], "kept": kept, "quarantined": stats["quarantined"], "dropped": sum(stats["dropped"].values()),
            **{f"{k}_docs": len(v) for k, v in split.items()}}
