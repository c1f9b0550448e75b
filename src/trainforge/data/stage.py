"""The data stage: read → normalise → filter → exact dedup → split, with a funnel that reconciles.

Every input record ends in exactly one place, and stats.json proves it:

    read == kept + quarantined + sum(dropped.values())

    data/train.jsonl val.jsonl test.jsonl   kept records, {"id","text","label","source",...}
    data/stats.json                         the funnel: per step docs/bytes in and out, drops by reason
    data/rejected/<reason>.jsonl            every dropped record, with its reason
    data/quarantine/records.jsonl           unreadable records: source file, line, reason, raw
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

from trainforge.console import progress_bar
from trainforge.data.config import DataConfig, LengthFilter
from trainforge.data.io import Quarantined, Record, read_source, write_jsonl
from trainforge.errors import UserError

_SPACES = re.compile(r"\s+")


class Funnel:
    """Counts per step; the examples are the first three drops of each reason."""

    def __init__(self):
        self.steps: dict[str, dict] = {}
        self.dropped: Counter = Counter()
        self.rejected: dict[str, list[dict]] = defaultdict(list)

    def step(self, name: str, docs_in: list[Record], docs_out: list[Record], seconds: float, dropped: Counter) -> None:
        self.steps[name] = {
            "docs_in": len(docs_in),
            "docs_out": len(docs_out),
            "bytes_in": sum(len(r.text.encode()) for r in docs_in),
            "bytes_out": sum(len(r.text.encode()) for r in docs_out),
            "dropped": dict(dropped),
            "seconds": round(seconds, 3),
        }

    def drop(self, record: Record, reason: str) -> None:
        self.dropped[reason] += 1
        self.rejected[reason].append({**record.to_json(), "reason": reason, "line": record.line})


def normalize(text: str, cfg) -> str:
    if cfg.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if cfg.whitespace:
        text = _SPACES.sub(" ", text).strip()
    return text


def length_reason(text: str, f: LengthFilter) -> str | None:
    if len(text) < f.min_chars:
        return "too_short"
    if len(text) > f.max_chars:
        return "too_long"
    return None


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


def run_data(ctx) -> dict:
    cfg: DataConfig = ctx.section
    out = ctx.path("data")
    if out.exists():
        shutil.rmtree(out)  # a rerun replaces the stage's outputs whole: no stale shards
    (out / "rejected").mkdir(parents=True)
    (out / "quarantine").mkdir()
    funnel = Funnel()

    # read (+ normalise as we go: the step is per record and cheap)
    t0 = time.perf_counter()
    records: list[Record] = []
    quarantined: list[Quarantined] = []
    raw_bytes = 0
    with progress_bar("read", total=None, unit="docs") as bar:
        for src in cfg.sources:
            for item in read_source(src):
                bar.advance()
                if isinstance(item, Quarantined):
                    quarantined.append(item)
                    continue
                raw_bytes += len(item.text.encode())
                item.text = normalize(item.text, cfg.normalize)
                records.append(item)
    read_n = len(records) + len(quarantined)
    funnel.steps["read"] = {"docs_in": read_n, "docs_out": len(records), "bytes_in": raw_bytes, "quarantined": len(quarantined),
                            "quarantine_reasons": dict(Counter(q.reason for q in quarantined)), "seconds": round(time.perf_counter() - t0, 3)}

    # filters
    for spec in cfg.filters:
        t0, dropped, kept = time.perf_counter(), Counter(), []
        for r in records:
            reason = length_reason(r.text, spec.length) if spec.length else None
            if reason:
                dropped[reason] += 1
                funnel.drop(r, reason)
            else:
                kept.append(r)
        funnel.step("filter_length", records, kept, time.perf_counter() - t0, dropped)
        records = kept

    # exact dedup on the normalised text; a text carrying two labels is dropped whole
    if cfg.dedup.exact != "off":
        t0, dropped = time.perf_counter(), Counter()
        first: dict[bytes, Record] = {}
        labels: dict[bytes, set] = defaultdict(set)
        kept = []
        for r in records:
            h = hashlib.blake2b(r.text.encode(), digest_size=16).digest()
            labels[h].add(r.label)
            if h in first:
                dropped["exact_duplicate"] += 1
                funnel.drop(r, "exact_duplicate")
            else:
                first[h] = r
                kept.append(r)
        if cfg.dedup.drop_label_conflicts:
            clean = []
            for r in kept:
                h = hashlib.blake2b(r.text.encode(), digest_size=16).digest()
                if len(labels[h]) > 1:
                    dropped["label_conflict"] += 1
                    funnel.drop(r, "label_conflict")
                else:
                    clean.append(r)
            kept = clean
        funnel.step("dedup_exact", records, kept, time.perf_counter() - t0, dropped)
        records = kept

    if not records:
        raise UserError("data: no record survived reading and filtering; see data/stats.json and data/quarantine/")
    split = stratified_split(records, cfg.split.val, cfg.split.test, cfg.split.stratify, ctx.config.seed)
    for name, part in split.items():
        write_jsonl(out / f"{name}.jsonl", part)
    for reason, rows in funnel.rejected.items():
        write_jsonl(out / "rejected" / f"{reason}.jsonl", rows)
    write_jsonl(out / "quarantine" / "records.jsonl", quarantined)

    kept_n = len(records)
    if read_n != kept_n + len(quarantined) + sum(funnel.dropped.values()):
        raise AssertionError("data funnel does not reconcile: a record was lost")  # our bug, never the user's
    stats = {
        "read": read_n,
        "kept": kept_n,
        "quarantined": len(quarantined),
        "dropped": dict(funnel.dropped),
        "steps": funnel.steps,
        "examples": {reason: [r["text"][:200] for r in rows[:3]] for reason, rows in funnel.rejected.items()},
        "splits": {k: len(v) for k, v in split.items()},
        "labels": {k: dict(Counter(r.label for r in v)) for k, v in split.items()},
    }
    from trainforge.run import write_json_atomic

    write_json_atomic(out / "stats.json", stats)
    return {"read": read_n, "kept": kept_n, "quarantined": len(quarantined), "dropped": sum(funnel.dropped.values()),
            **{f"{k}_docs": len(v) for k, v in split.items()}}
