"""`trainforge eval RUN [--split test] [--against OTHER_RUN]` (imports nothing heavy at module level)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("eval", help="score a run's model beside its baseline, analyse its errors and robustness")
    p.add_argument("run", help="run directory, e.g. runs/quickstart")
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--against", metavar="OTHER_RUN",
                   help="print a regression diff against another evaluated run (bootstrap CIs, flipped examples)")
    p.add_argument("--lm-eval", metavar="TASK_DIR", help="causal LMs: also run lm-evaluation-harness on the task YAMLs in this folder")
    p.add_argument("--lm-eval-tasks", metavar="A,B", help="only these tasks of TASK_DIR (default: every task it defines)")
    p.add_argument("--lm-eval-limit", type=int, metavar="N", help="score at most N documents per task")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    import json
    from pathlib import Path

    from trainforge.config import config_of_run
    from trainforge.console import console
    from trainforge.errors import UserError
    from trainforge.evaluate.config import EvalConfig
    from trainforge.run import run_pipeline

    if args.against and not (Path(args.against) / "eval" / "predictions.jsonl").is_file():
        raise UserError(f"--against {args.against}: no eval/predictions.jsonl there; run `trainforge eval {args.against}` first")
    if args.lm_eval and not Path(args.lm_eval).is_dir():
        raise UserError(f"--lm-eval {args.lm_eval}: no such folder of lm-evaluation-harness task YAML files")
    cfg = config_of_run(args.run)
    section = (cfg.eval or EvalConfig()).model_copy(update={"split": args.split})
    cfg = cfg.model_copy(update={"eval": section})
    run_pipeline(cfg, force=("eval",), only=("eval",))
    out = cfg.run_dir / "eval"
    if args.against:
        from trainforge.data.io import read_jsonl
        from trainforge.evaluate.diff import format_diff, regression_diff

        diff = regression_diff(cfg.run_dir, Path(args.against), n_boot=section.bootstrap_samples, seed=cfg.seed)
        (out / "regression.json").write_text(json.dumps(diff, indent=1, ensure_ascii=False))
        texts = {r["id"]: r["text"] for r in read_jsonl(cfg.run_dir / "data" / f"{args.split}.jsonl")}
        print(format_diff(diff, texts))
        console.print(f"[bold]regression diff[/] {out / 'regression.json'}")
    if args.lm_eval:
        from trainforge.evaluate.harness import run_harness

        tasks = [t.strip() for t in args.lm_eval_tasks.split(",") if t.strip()] if args.lm_eval_tasks else None
        results = run_harness(cfg.run_dir / "model", Path(args.lm_eval), tasks, args.lm_eval_limit, device=cfg.device)
        for task, metrics in results.items():
            print(f"lm-eval {task}: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        console.print(f"[bold]lm-evaluation-harness[/] {out / 'lm_eval.json'}")
    if args.against or args.lm_eval:  # the pipeline wrote the report before these existed
        from trainforge.report.html import write_report

        write_report(cfg.run_dir)
    errors = f"  ·  errors {out / 'errors.jsonl'}" if (out / "errors.jsonl").is_file() else ""
    console.print(f"\n[bold]metrics[/] {out / 'metrics.json'}{errors}  ·  report {cfg.run_dir / 'report.html'}")
    return 0
