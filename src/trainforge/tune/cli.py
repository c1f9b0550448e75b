"""`trainforge tune CONFIG [--trials N] [--storage URL]`."""

from __future__ import annotations


def cmd_tune(args) -> int:
    from trainforge.console import console
    from trainforge.tune.search import tune

    s = tune(args.config, args.overrides, trials=args.trials, storage=args.storage)
    console.print(f"\n[bold]best {s['metric']}[/] {s['best_value']:.4f} with {s['best_params']}  ·  run {s['best_run']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna (each trial is a run)")
    p.add_argument("config", help="YAML config with a tune: section")
    p.add_argument("overrides", nargs="*", metavar="key.path=value")
    p.add_argument("--trials", type=int, default=None, help="trials for this process (default: tune.trials)")
    p.add_argument("--storage", default=None, help="Optuna storage URL shared by workers, e.g. sqlite:///runs/optuna.db")
    p.set_defaults(func=cmd_tune)
