"""`trainforge data clean|dedup|stats`: the data stage on plain files.

    trainforge data clean IN… -o DIR [--lang zh]           normalise + the language's default filters
    trainforge data dedup IN… -o DIR [--near 0.8] [--bloom-fp 1e-6] [--bloom-state PATH]
    trainforge data stats DIR                              print the funnel of DIR/data/stats.json
    trainforge data collect [SOURCES.yaml] -o DIR …         files, an HTTP API, a crawl, WARC → DIR/collect/ (collect/cli.py)

DIR gets the run directory's data/ layout: data/kept.jsonl, data/stats.json, data/quarantine/,
data/rejected/. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations


def _common(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN", help="files (.jsonl .csv .tsv .parquet .txt, .gz/.zst) or datasets dirs")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory (gets data/…)")
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--label-field", default=None, help="field holding a label to keep (default: none)")
    p.add_argument("--id-field", default="id", help="field holding the record's own id, kept where a record has one; "
                   "file:line where it does not (default: id; '' for file:line always)")
    p.add_argument("--workers", type=int, default=1, help="processes for the per-document work (default: 1)")
    p.add_argument("--ray", action="store_true", help="run the shards on Ray instead of local processes")
    p.add_argument("--pii", choices=["off", "mask"], default="off", help="mask e-mails, phones, ID numbers, bank cards")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="bound memory (e.g. 2GB): run out of core over DIR/data.work/, same kept set (default: in memory)")


def register(sub) -> None:
    data = sub.add_parser("data", help="clean / dedup / inspect data files (the data stage on plain files)")
    verbs = data.add_subparsers(dest="data_command", required=True)

    p = verbs.add_parser("clean", help="normalise and filter")
    _common(p)
    p.add_argument("--lang", choices=["zh", "en"], default="zh", help="per-language default filters (default: zh)")
    p.add_argument("--quality", type=float, default=None, metavar="PCT",
                   help="also drop the PCT%% highest-perplexity documents (char LM of the reference corpus)")
    p.set_defaults(func=cmd_clean)

    p = verbs.add_parser("dedup", help="exact (hash or Bloom filter) and near-duplicate (MinHash LSH) removal")
    _common(p)
    p.add_argument("--near", type=float, default=0.8, help="Jaccard threshold for near duplicates; 0 turns it off (default 0.8)")
    p.add_argument("--bloom-fp", type=float, default=None, help="use a Bloom filter with this false-positive rate (default: exact hashes)")
    p.add_argument("--bloom-state", default=None, metavar="PATH", help="load/save the Bloom filter here to dedup across batches")
    p.add_argument("--bloom-capacity", type=int, default=None, metavar="N",
                   help="expected distinct documents, sizes the Bloom filter (default: the count read, or 10M when streaming)")
    p.add_argument("--keep", choices=["first", "longest"], default="first", help="which near duplicate survives")
    p.add_argument("--decontaminate", nargs="*", default=[], metavar="FILE", help="drop documents sharing a 13-gram with these files")
    p.set_defaults(func=cmd_dedup)

    p = verbs.add_parser("stats", help="print the funnel of a data directory or run")
    p.add_argument("dir", help="DIR given to clean/dedup, or a run directory")
    p.set_defaults(func=cmd_stats)

    from trainforge.collect.cli import add_parser as add_collect  # light: argparse only

    add_collect(verbs)


def _sources(args):
    from trainforge.data.config import SourceConfig

    return [SourceConfig(path=p, text_field=args.text_field, label_field=args.label_field, id_field=args.id_field or None)
            for p in args.inputs]


def _finish(args, cfg, reference: list[str] | None = None) -> int:
    """Run the pipeline on the inputs: chunk by chunk in bounded memory when no step needs the whole
    corpus (clean; dedup --near 0), else in memory. Kept documents go to DIR/data/kept.jsonl."""
    from pathlib import Path

    from trainforge.console import console
    from trainforge.data import pipeline as P
    from trainforge.data.io import write_jsonl
    from trainforge.data.stage import curate_in_chunks, curate_sources, streamable
    from trainforge.files import write_json_atomic

    out = Path(args.out) / "data"

    def sink(records, funnel) -> int:
        if reference is not None:
            records = P.decontaminate(records, reference, 13, funnel)
        return write_jsonl(out / "kept.jsonl", records, append=True)

    ooc = None
    if cfg.max_memory is not None and not streamable(cfg):
        from trainforge.data.outofcore import curate_out_of_core, parse_size

        read, quarantined, kept, funnel, ooc = curate_out_of_core(cfg, out, 0, sink, parse_size(cfg.max_memory, "--max-memory"),
                                                                  workers=args.workers, log=lambda m: console.print(f"[dim]{m}[/]"))
    elif streamable(cfg):
        read, quarantined, kept, funnel = curate_in_chunks(cfg, out, seed=0, sink=sink, workers=args.workers)
    else:
        cur, funnel = curate_sources(cfg, out, seed=0, workers=args.workers)
        read, quarantined, kept = cur.read, cur.quarantined, sink(cur.records, funnel)
    if not (out / "kept.jsonl").exists():
        write_jsonl(out / "kept.jsonl", [])
    stats = funnel.stats(read, kept, quarantined, streamed=streamable(cfg), **({"out_of_core": ooc} if ooc else {}))
    write_json_atomic(out / "stats.json", stats)
    print_funnel(stats)
    if ooc:
        console.print(f"out of core: limit {ooc['max_memory'] / 2**20:,.0f} MiB, peak RSS {ooc['peak_rss'] / 2**20:,.0f} MiB, "
                      f"{ooc['bytes_spilled'] / 2**20:,.1f} MiB spilled to disk, "
                      + ", ".join(f"{k} {v:.1f}s" for k, v in ooc["seconds"].items()))
    console.print(f"\n[bold]outputs[/] {out}/kept.jsonl  ·  stats {out}/stats.json  ·  rejected/ quarantine/")
    return 0


def cmd_clean(args) -> int:
    from trainforge.data.config import DataConfig, DedupConfig, FilterSpec, NormalizeConfig
    from trainforge.data.filters import PER_LANGUAGE_DEFAULTS

    filters = [FilterSpec(**f) for f in PER_LANGUAGE_DEFAULTS[args.lang]]
    if args.quality:
        filters.append(FilterSpec(quality={"drop_percentile": args.quality}))
    cfg = DataConfig(sources=_sources(args), normalize=NormalizeConfig(pii=args.pii), filters=filters,
                     dedup=DedupConfig(exact="off", near=None), decontaminate=None, workers=args.workers,
                     executor="ray" if args.ray else "local", max_memory=args.max_memory)
    return _finish(args, cfg)


def cmd_dedup(args) -> int:
    from trainforge.data.config import DataConfig, DedupConfig, NormalizeConfig, SourceConfig
    from trainforge.data.io import Record, read_source

    dedup = DedupConfig(exact="bloom" if args.bloom_fp or args.bloom_state else "hash", bloom_fp=args.bloom_fp or 1e-6,
                        bloom_path=args.bloom_state, bloom_capacity=args.bloom_capacity, near=args.near or None, keep=args.keep, drop_label_conflicts=False)
    cfg = DataConfig(sources=_sources(args), normalize=NormalizeConfig(pii=args.pii), filters=[], dedup=dedup,
                     decontaminate=None, workers=args.workers, executor="ray" if args.ray else "local",
                     max_memory=args.max_memory)
    reference = None
    if args.decontaminate:
        reference = [item.document for f in args.decontaminate
                     for item in read_source(SourceConfig(path=f, text_field=args.text_field, label_field=None))
                     if isinstance(item, Record)]
    return _finish(args, cfg, reference)


def print_funnel(stats: dict) -> None:
    from rich.table import Table

    from trainforge.console import console

    t = Table(title="data funnel")
    for col in ("step", "docs in", "docs out", "MB out", "seconds", "dropped"):
        t.add_column(col, justify="left" if col in ("step", "dropped") else "right")
    for name, st in stats["steps"].items():
        reasons = st.get("quarantine_reasons") or st.get("dropped") or {}
        t.add_row(name, f"{st['docs_in']:,}", f"{st['docs_out']:,}", f"{(st.get('bytes_out') or 0) / 1e6:.2f}",
                  f"{st['seconds']:.2f}", ", ".join(f"{k} {v:,}" for k, v in reasons.items()))
    console.print(t)
    dropped = sum(stats["dropped"].values())
    ok = stats["read"] == stats["kept"] + stats["quarantined"] + dropped
    console.print(f"read {stats['read']:,} = kept {stats['kept']:,} + quarantined {stats['quarantined']:,} + dropped {dropped:,} "
                  + ("[green]✓[/]" if ok else "[red]✗ does not reconcile[/]"))
    near = stats["steps"].get("dedup_near")
    if near:
        console.print(f"near-dup: {near['bands']} bands × {near['rows']} rows, P(candidate | Jaccard) "
                      + ", ".join(f"{j}: {p:.3f}" for j, p in near["s_curve"].items()))
    bloom = stats["steps"].get("dedup_exact", {}).get("bloom")
    if bloom:
        console.print(f"Bloom filter: {bloom['bytes']:,} bytes ({bloom['bytes'] / bloom['optimal_bytes']:.3f}× optimum), "
                      f"{bloom['hashes']} hashes, false positives measured {bloom['fp_measured']:.2e} (target {bloom['fp_target']:.0e})")


def cmd_stats(args) -> int:
    import json
    from pathlib import Path

    from trainforge.errors import UserError

    base = Path(args.dir)
    for candidate in (base / "data" / "stats.json", base / "stats.json"):
        if candidate.is_file():
            try:
                stats = json.loads(candidate.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise UserError(f"{candidate}: not valid JSON ({e})") from None
            print_funnel(stats)
            return 0
    raise UserError(f"{base}: no data/stats.json (run `trainforge data clean|dedup … -o {base}` or pass a run directory)")
