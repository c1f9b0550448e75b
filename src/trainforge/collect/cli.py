"""`trainforge data collect`: the collect stage on its own, into DIR/collect/.

    trainforge data collect SOURCES.yaml -o DIR          a collect: section (or a whole run config that has one)
    trainforge data collect -o DIR --files 'raw/*.jsonl' --crawl https://example.com/ --warc 'cc/*.warc.gz'
    trainforge data collect -o DIR --api https://api.example.com/items --records data --text-field body

Registered under `trainforge data` by trainforge.data.cli; nothing heavy is imported until it runs.
"""

from __future__ import annotations


def add_parser(verbs) -> None:
    p = verbs.add_parser("collect", help="fetch files, an HTTP JSON API, a polite web crawl or WARC files into DIR/collect/")
    p.add_argument("config", nargs="?", help="YAML with a collect: section (or just its sources:)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory (gets collect/…)")
    p.add_argument("--files", action="append", default=[], metavar="GLOB", help="files to read (repeatable)")
    p.add_argument("--warc", action="append", default=[], metavar="GLOB", help="WARC files to read (repeatable)")
    p.add_argument("--crawl", action="append", default=[], metavar="URL", help="start URL of a polite crawl (repeatable)")
    p.add_argument("--max-pages", type=int, default=100, help="crawl: stop after this many responses (default 100)")
    p.add_argument("--max-depth", type=int, default=2, help="crawl: links followed from a start page (default 2)")
    p.add_argument("--delay", type=float, default=1.0, help="crawl: seconds between requests to a domain (default 1.0)")
    p.add_argument("--api", default=None, metavar="URL", help="an HTTP JSON API (one page; use a YAML for pagination/auth)")
    p.add_argument("--records", default="@", help="api: JMESPath to the list of records (default: the body)")
    p.add_argument("--text-field", default="text", help="field (files) or JMESPath (api) of the text (default: text)")
    p.add_argument("--label-field", default=None, help="field (files) or JMESPath (api) of a label (default: none)")
    p.add_argument("--fresh", action="store_true", help="do not resume an interrupted API collection or crawl")
    p.set_defaults(func=cmd_collect)


def _config(args):
    from pathlib import Path

    import yaml

    from trainforge.collect.config import CollectConfig
    from trainforge.errors import UserError

    sources: list[dict] = []
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        raw = raw.get("collect", raw) if isinstance(raw, dict) else raw
        if not isinstance(raw, dict) or "sources" not in raw:
            raise UserError(f"{path}: expected a collect: section (or a mapping with sources:)")
        base = raw
    else:
        base = {"sources": []}
    for n, g in enumerate(args.files):
        sources.append({"name": f"files{n}", "files": {"glob": g, "text_field": args.text_field, "label_field": args.label_field}})
    for n, g in enumerate(args.warc):
        sources.append({"name": f"warc{n}", "warc": {"glob": g}})
    for n, url in enumerate(args.crawl):
        sources.append({"name": f"crawl{n}", "crawl": {"start_urls": [url], "max_pages": args.max_pages,
                                                       "max_depth": args.max_depth, "download_delay": args.delay}})
    if args.api:
        fields = {"text": args.text_field} | ({"label": args.label_field} if args.label_field else {})
        sources.append({"name": "api", "api": {"url": args.api, "records": args.records, "fields": fields}})
    raw = {**base, "sources": [*base["sources"], *sources]}
    if args.fresh:
        raw["resume"] = False
    if not raw["sources"]:
        raise UserError("data collect: nothing to collect — give a YAML, --files, --warc, --crawl or --api")
    from pydantic import ValidationError

    try:
        return CollectConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError("\n".join(f"collect.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None


def cmd_collect(args) -> int:
    from pathlib import Path

    from rich.table import Table

    from trainforge.collect.stage import collect
    from trainforge.console import console

    out = Path(args.out) / "collect"
    stats = collect(_config(args), out)
    t = Table(title="collect funnel")
    for col in ("source", "kind", "fetched", "kept", "failed"):
        t.add_column(col, justify="left" if col in ("source", "kind", "failed") else "right")
    for name, st in stats["sources"].items():
        t.add_row(name, st["kind"], f"{st['fetched']:,}", f"{st['kept']:,}", ", ".join(f"{k} {v:,}" for k, v in st["failed"].items()))
    console.print(t)
    console.print(f"\n[bold]outputs[/] {out}/records.jsonl  ·  stats {out}/stats.json  ·  failures {out}/failed.jsonl")
    return 0
