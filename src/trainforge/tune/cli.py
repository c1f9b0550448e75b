"""`trainforge tune CONFIG [--trials N] [--workers N] [--storage URL] [--sampler S]`."""

from __future__ import annotations


def cmd_tune(args) -> int:
    from trainforge.console import console
    from trainforge.tune.search import tune

    s = tune(args.config, args.overrides, trials=args.trials, storage=args.storage, workers=args.workers,
             sampler=args.sampler)
    states: dict[str, int] = {}
    for t in s["trials"]:
        states[t["state"].lower()] = states.get(t["state"].lower(), 0) + 1
    console.print("\n" + " · ".join(f"{n} {k}" for k, n in states.items()) + f" · {s['total_steps']} training steps")
    if s["pareto"]:
        console.print(f"[bold]Pareto front[/] of {', '.join(s['metrics'])}: trials "
                      + ", ".join(str(t["number"]) for t in s["pareto"]) + "  (configs in pareto/)")
    elif s["best_trial"] is not None:
        console.print(f"[bold]best {s['metric']}[/] {s['best_value']:.4f} with {s['best_params']}  ·  run {s['best_run']}")
    else:
        console.print("[red]no trial completed[/] (see the errors in the trial table)")
    console.print(f"study: {s['storage']}  ·  report: {s['report']}")
    return 130 if s["interrupted"] else 0


def register(sub) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna (each trial is a run)")
    p.add_argument("config", help="YAML config with a tune: section")
    p.add_argument("overrides", nargs="*", metavar="key.path=value")
    p.add_argument("--trials", type=int, default=None, help="trials for this command, over all its workers (default: tune.trials)")
    p.add_argument("--workers", type=int, default=None, help="trials at once on this machine, one process each (default: tune.workers)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage shared by workers: a .journal file (default runs/optuna.journal) or postgresql://…")
    p.add_argument("--sampler", default=None, choices=["tpe", "random", "grid", "cmaes", "nsga2"], help="default: tune.sampler")
    p.set_defaults(func=cmd_tune)
