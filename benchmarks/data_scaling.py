"""Scaling of the data pipeline with `--workers`: the whole curation, workers = 1 and 2 side by side.

The same corpus (planted Chinese documents, benchmarks/data_pipeline.py's synthetic set, written as
JSONL) goes through stage.curate_sources — read → normalise → filters → exact dedup → near dedup —
once per worker count, in this one process run. Wall-clock docs/s includes starting the process pool
(spawn), i.e. what `trainforge data clean --workers N` costs. Each worker count runs --repeat times,
alternating, and the best run counts (the machine is shared: the best run is the least disturbed).
The kept ids must be identical for every worker count (checked, printed).

Run (≈ 1 min on 2 idle cores; needs idle cores to mean anything — the load average is printed):

    .venv/bin/python benchmarks/data_scaling.py                 # 60k docs, workers 1 2
    .venv/bin/python benchmarks/data_scaling.py --dedup-only    # normalise + exact + near dedup only
    .venv/bin/python benchmarks/data_scaling.py --docs 20000 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

FILTERS = [{"length": {"min_chars": 2}}, {"script_ratio": {}}, {"symbol_ratio": {}}, {"repetition": {}}]


def write_corpus(path: Path, docs: int) -> None:
    from trainforge.data.synthetic import planted_corpus

    corpus = planted_corpus(docs, seed=0, dup_share=0.2)
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(corpus.texts):
            f.write(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n")


def curate(path: Path, out: Path, workers: int, quality: bool, dedup_only: bool = False) -> tuple[float, list[str], dict]:
    from trainforge.data.config import DataConfig, DedupConfig, FilterSpec, SourceConfig
    from trainforge.data.stage import curate_sources

    filters = FILTERS[:1] if dedup_only else FILTERS + ([{"quality": {"drop_percentile": 5}}] if quality else [])
    cfg = DataConfig(sources=[SourceConfig(path=str(path), label_field=None, id_field="id")],
                     filters=[FilterSpec(**f) for f in filters], dedup=DedupConfig(exact="hash", near=0.8))
    t0 = time.perf_counter()
    cur, funnel = curate_sources(cfg, out, seed=0, workers=workers)
    return time.perf_counter() - t0, [r.id for r in cur.records], funnel.steps


def scaling(docs: int, workers: list[int], repeat: int = 2, quality: bool = False, dedup_only: bool = False) -> dict[int, float]:
    """Prints the table; returns docs/s by worker count."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        write_corpus(path, docs)
        best: dict[int, float] = {}
        kept: dict[int, list[str]] = {}
        steps: dict[int, dict] = {}
        for _ in range(repeat):
            for w in workers:
                seconds, ids, st = curate(path, Path(tmp) / f"out{w}", w, quality, dedup_only)
                if seconds < best.get(w, float("inf")):
                    best[w], steps[w] = seconds, st
                kept[w] = ids
    load_after = os.getloadavg()

    base = workers[0]
    names = "length" if dedup_only else "+".join(next(iter(f)) for f in FILTERS) + ("+quality" if quality else "")
    print(f"\ndata pipeline scaling: {docs:,} synthetic Chinese docs (JSONL), filters {names}, exact + near dedup (0.8)")
    print(f"machine: {os.cpu_count()} cores; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"  {'workers':>7}{'seconds':>10}{'docs/s':>10}{'× ' + str(base) + ' worker':>13}{'kept':>8}  same kept ids")
    for w in workers:
        print(f"  {w:>7}{best[w]:>10.2f}{docs / best[w]:>10,.0f}{best[base] / best[w]:>12.2f}×{len(kept[w]):>8,}"
              f"  {kept[w] == kept[base]}")
    # where the time goes (worker seconds are summed over workers; read and the dedup LSH are the parent's)
    print(f"  per-step seconds at {base} worker(s): " + ", ".join(f"{k} {v['seconds']:.2f}" for k, v in steps[base].items()))
    return {w: docs / best[w] for w in workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=60_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2, help="runs per worker count (alternating); the best counts")
    ap.add_argument("--quality", action="store_true", help="add the quality filter (reference n-gram LM perplexity)")
    ap.add_argument("--dedup-only", action="store_true", help="only the length filter: normalise + exact + near dedup")
    args = ap.parse_args()
    scaling(args.docs, args.workers, args.repeat, args.quality, args.dedup_only)


if __name__ == "__main__":
    main()
