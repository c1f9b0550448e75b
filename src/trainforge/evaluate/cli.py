"""`trainforge eval RUN [--split test] [--against OTHER_RUN]` (imports nothing heavy at module level)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("eval", help="score a run's model beside its baseline, analyse its errors and robustness")
    p.add_argument("run", help="run directory, e.g. runs/quickstart")
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--against", metavar="OTHER_RUN",
                   help="print a regression diff against another evaluated run (bootstrap CIs, flipped examples)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    import json
    from pathlib import Path

    from trainforge.cli import _config_of_run
    from trainforge.console import console
    from trainforge.errors import UserError
    from trainforge.evaluate.config import EvalConfig
    from trainforge.run import run_pipeline

    if args.against and not (Path(args.against) / "eval" / "predictions.jsonl").is_file():
        raise UserError(f"--against {args.against}: no eval/predictions.jsonl there; run `trainforge eval {args.against}` first")
    cfg = _config_of_run(args.run)
    section = (cfg.eval or EvalConfig()).model_copy(update={"split": args.split})
    cfg = cfg.model_copy(update={"eval": section})
    run_pipeline(cfg, force=("eval",), only=("eval",))
    out = cfg.run_dir / "eval"
    if args.against:
        from trainforge.data.io import read_jsonl
        from trainforge.evaluate.diff import format_diff, regression_diff
        from trainforge.report.html import write_report

        diff = regression_diff(cfg.run_dir, Path(args.against), n_boot=section.bootstrap_samples, seed=cfg.seed)
        (out / "regression.json").write_text(json.dumps(diff, indent=1, ensure_ascii=False))
        texts = {r["id"]: r["text"] for r in read_jsonl(cfg.run_dir / "data" / f"{args.split}.jsonl")}
        print(format_diff(diff, texts))
        write_report(cfg.run_dir)
        console.print(f"[bold]regression diff[/] {out / 'regression.json'}")
    errors = f"  ·  errors {out / 'errors.jsonl'}" if (out / "errors.jsonl").is_file() else ""
    console.print(f"\n[bold]metrics[/] {out / 'metrics.json'}{errors}  ·  report {cfg.run_dir / 'report.html'}")
    return 0
