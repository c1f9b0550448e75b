"""`trainforge compress RUN [--int8] [--prune 0.3] [--magnitude 0.5] [--distill] [--set key=value ...]`.

With no variant flag the run's own `compress:` section (or its defaults: INT8 only) decides; any
variant flag replaces that choice with exactly the variants named. Nothing heavy is imported here.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("compress", help="quantise / prune / distil a run's model; gate every variant against it")
    p.add_argument("run", help="run directory with model/ and data/, e.g. runs/quickstart")
    p.add_argument("--int8", action="store_true", help="dynamic INT8 quantisation of the linear layers")
    p.add_argument("--weight-only-int8", action="store_true", help="int8 weights, float activations (causal LMs)")
    p.add_argument("--prune", type=float, metavar="FRACTION", help="structured pruning: remove this share of heads and FFN neurons")
    p.add_argument("--magnitude", type=float, metavar="SPARSITY", help="global magnitude pruning to this sparsity")
    p.add_argument("--distill", action="store_true", help="distil into a student with half the layers")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="dotted override, repeatable, e.g. --set compress.gates.min_speedup_b32=1.2")
    p.set_defaults(func=cmd_compress)


def cmd_compress(args) -> int:
    from trainforge.config import config_of_run
    from trainforge.compress.config import CompressConfig, DistillConfig, StructuredConfig
    from trainforge.config import parse_override, set_dotted, validate_config
    from trainforge.console import console
    from trainforge.run import run_pipeline

    cfg = config_of_run(args.run)
    section = cfg.compress or CompressConfig()
    if args.int8 or args.weight_only_int8 or args.prune is not None or args.magnitude is not None or args.distill:
        section = section.model_construct(**{
            **dict(section),
            "int8": args.int8,
            "weight_only_int8": args.weight_only_int8,
            "magnitude_sparsity": args.magnitude,
            "structured": (section.structured or StructuredConfig()).model_construct(
                **{**dict(section.structured or StructuredConfig()), "fraction": args.prune}) if args.prune is not None else None,
            "distill": (section.distill or DistillConfig()) if args.distill else None,
        })
    raw = cfg.model_dump(mode="json")
    raw["compress"] = section.model_dump(mode="json")  # re-validated below, so bad flag values name their key
    for item in args.overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value, item)
    cfg = validate_config(raw, source=f"{args.run}/config.resolved.yaml + flags")
    run_pipeline(cfg, force=("compress",), only=("compress",))
    out = cfg.run_dir / "compress"
    console.print(f"\n[bold]gates[/] {out / 'gates.json'}  ·  [bold]candidate[/] {out / 'candidate.json'}")
    return 0
