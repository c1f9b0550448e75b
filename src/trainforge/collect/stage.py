"""The collect stage: every source in order into collect/records.jsonl, with a funnel from `fetched`.

    collect/records.jsonl    kept documents: id, text, label?, source, content_sha256, url/title/date/fetched_at…
    collect/failed.jsonl     every fetched document that did not become a record, with its reason
    collect/stats.json       fetched == kept + failed, per source and in total; requests, retries, robots.txt refusals
    collect/sources/<name>/  per-source state: the API cursor, the crawl's pages and JOBDIR

The data stage reads collect/records.jsonl as one more source (`collected_source`) when this stage is in the config.
"""

from __future__ import annotations

from pathlib import Path

from trainforge.collect.config import CollectConfig
from trainforge.collect.output import Collected
from trainforge.console import console
from trainforge.files import write_json_atomic
from trainforge.paths import COLLECT, COLLECTED


def collect(cfg: CollectConfig, out: Path, key: str = "collect") -> dict:
    """Run every source; returns the stats written to out/stats.json."""
    sink = Collected(out, cfg.min_chars)
    try:
        for i, src in enumerate(cfg.sources):
            where = f"{key}.sources.{i}.{src.kind}"
            workdir = out / "sources" / src.name
            console.print(f"[dim]collect {src.name} ({src.kind})[/]")
            if src.kind == "files":
                from trainforge.collect.files import collect_files

                collect_files(src.name, src.files, sink, where)
            elif src.kind == "api":
                from trainforge.collect.api import collect_api

                collect_api(src.name, src.api, workdir, sink, where, cfg.resume)
            elif src.kind == "crawl":
                from trainforge.collect.crawl import collect_crawl

                collect_crawl(src.name, src.crawl, workdir, sink, where, cfg.resume)
            else:
                from trainforge.collect.warc import collect_warc

                collect_warc(src.name, src.warc, sink, where)
    finally:
        stats = sink.stats({s.name: s.kind for s in cfg.sources if s.name in sink.fetched or s.name in sink.extra})
    write_json_atomic(out / "stats.json", stats)
    return stats


def run_collect(ctx) -> dict:
    stats = collect(ctx.section, ctx.path(COLLECT))
    return {"fetched": stats["fetched"], "kept": stats["kept"], "failed": sum(stats["failed"].values())}


def collected_source(config, run_dir: Path):
    """The data stage's extra source: collect/records.jsonl when the config has a collect section (else None)."""
    collect_cfg = getattr(config, "collect", None)
    if collect_cfg is None:
        return None
    from trainforge.data.config import SourceConfig

    return SourceConfig(path=str(run_dir / COLLECTED), format="jsonl", text_field="text", id_field="id",
                        label_field="label" if collect_cfg.labelled() else None)
