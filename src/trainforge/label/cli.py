"""`trainforge label queue RUN --pool FILE` and `trainforge label import EXPORT.json`."""

from __future__ import annotations

from pathlib import Path


def _label_config(args):
    """The label: section of --config (or the run's resolved config), with the command line's overrides."""
    from trainforge.label.config import LabelConfig

    cfg = None
    if getattr(args, "config", None):
        from trainforge.config import load_config

        cfg = load_config(args.config).label
    elif getattr(args, "run", None) and (Path(args.run) / "config.resolved.yaml").is_file():
        from trainforge.config import config_of_run

        cfg = config_of_run(args.run).label
    cfg = cfg or LabelConfig()
    updates = {k: v for k, v in (("strategy", getattr(args, "strategy", None)), ("batch_size", getattr(args, "batch_size", None)),
                                 ("budget", getattr(args, "budget", None))) if v is not None}
    return LabelConfig(**{**cfg.model_dump(), **updates})


def cmd_queue(args) -> int:
    from trainforge.console import console
    from trainforge.label.queue import queue_round

    cfg = _label_config(args)
    out = Path(args.out) if args.out else Path(args.run) / "label"
    s = queue_round(Path(args.run), Path(args.pool), cfg, out, seed=args.seed, model_dir=args.model)
    of_budget = f" of a budget of {s['budget']}" if s["budget"] else ""
    console.print(f"round {s['round']}: {s['queued']} of {s['pool']:,} pool records queued by {s['strategy']} "
                  f"({s['queued_total']} in all{of_budget})")
    console.print(f"[bold]wrote[/] {out / 'tasks.json'} (import into Label Studio) and {out / 'label_config.xml'} (its labelling config)")
    return 0


def cmd_import(args) -> int:
    import json

    from trainforge.console import console
    from trainforge.data.io import write_jsonl
    from trainforge.errors import UserError
    from trainforge.files import write_json_atomic
    from trainforge.label.studio import ChoiceSchema, import_export, parse_labelling_config

    cfg = _label_config(args)
    if args.label_config:
        schema = parse_labelling_config(Path(args.label_config).read_text(encoding="utf-8"), args.label_config)
    elif args.labels:
        schema = ChoiceSchema(cfg.from_name, cfg.to_name, tuple(x.strip() for x in args.labels.split(",") if x.strip()), cfg.text_key)
    else:
        raise UserError("trainforge label import: name the label set with --label-config (the label_config.xml "
                        "`label queue` wrote) or --labels a,b,…")
    got = import_export(args.export, schema, cfg.min_agreement)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "labelled.jsonl", got.records)
    write_jsonl(out / "quarantine.jsonl", got.quarantined)
    summary = got.summary()
    write_json_atomic(out / "import.json", summary)
    agree = f", mean agreement {summary['mean_agreement']:.3f} over {summary['multi_annotated_tasks']} multi-annotated tasks" \
        if summary["mean_agreement"] is not None else ""
    console.print(f"{summary['tasks']} tasks: {summary['records']} labelled records, {summary['quarantined']} quarantined "
                  f"{json.dumps(summary['quarantine_reasons'])}; {summary['annotations']} annotations "
                  f"({summary['cancelled']} cancelled){agree}")
    console.print(f"[bold]wrote[/] {out / 'labelled.jsonl'} (data-stage JSONL), {out / 'quarantine.jsonl'}, {out / 'import.json'}")
    return 0


def register(sub) -> None:
    label = sub.add_parser("label", help="active learning: queue records for Label Studio, import its annotations")
    verbs = label.add_subparsers(dest="label_cmd", required=True)
    p = verbs.add_parser("queue", help="rank a pool with a run's classifier; write the next batch as Label Studio tasks")
    p.add_argument("run", help="run directory whose model/ ranks the pool (runs/<name>)")
    p.add_argument("--pool", required=True, help="JSONL of unlabelled records ({\"id\", \"text\", …})")
    p.add_argument("--out", default=None, help="output directory (default RUN/label)")
    p.add_argument("--model", default=None, help="a classifier directory instead of RUN/model")
    p.add_argument("--config", default=None, help="YAML whose label: section to use (default: the run's)")
    p.add_argument("--strategy", default=None, help="least_confidence | margin | entropy | kcenter | random")
    p.add_argument("--batch-size", type=int, default=None, dest="batch_size", help="records this round")
    p.add_argument("--budget", type=int, default=None, help="labels over all rounds")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_queue)
    p = verbs.add_parser("import", help="read a Label Studio JSON export into data-stage records")
    p.add_argument("export", help="the project's JSON export")
    p.add_argument("-o", "--out", required=True, help="output directory: labelled.jsonl, quarantine.jsonl, import.json")
    p.add_argument("--label-config", default=None, dest="label_config", help="the labelling config XML (label_config.xml)")
    p.add_argument("--labels", default=None, help="the label set, comma separated, instead of --label-config")
    p.add_argument("--config", default=None, help="YAML whose label: section to use")
    p.set_defaults(func=cmd_import)
