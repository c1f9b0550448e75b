"""`trainforge serve`, `trainforge monitor drift`, `trainforge deploy promote|rollback|status`.

Nothing heavy is imported here: FastAPI, torch and MLflow load inside the handlers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model: OpenAI-compatible API, /metrics, drift, canary rollout")
    p.add_argument("model", metavar="RUN|MODEL_DIR|models:/NAME@ALIAS",
                   help="a run directory, a model directory, models:/NAME@ALIAS, or models:/NAME (champion + challenger canary)")
    p.add_argument("--host", help="bind address (default 127.0.0.1; any other address needs an API key)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: serve.device, else the config's device:, else auto)")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"],
                   help="model dtype (default serve.dtype: auto = bf16 on a GPU that has it, else fp32)")
    p.add_argument("--config", help="YAML with a serve: section (see examples/serve.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides of --config, e.g. serve.batching.max_wait_ms=2")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ (default $MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db)")
    p.add_argument("--events", help="append drift and rollout events to this JSONL file (default RUN/monitor/events.jsonl for a run)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("monitor", help="drift of a file of inputs against a run's training data")
    msub = p.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)
    q = msub.add_parser("drift", help="compare a JSONL of inputs with the run's reference profile")
    q.add_argument("--reference", required=True, metavar="RUN", help="the run whose training data is the reference")
    q.add_argument("--current", required=True, metavar="FILE.jsonl", help="live inputs, one {\"text\": …} per line")
    q.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    q.set_defaults(func=cmd_monitor_drift)

    p = sub.add_parser("deploy", help="registry aliases: promote the challenger, roll back, show status")
    dsub = p.add_subparsers(dest="deploy_command", metavar="ACTION", required=True)
    for action, text in (("promote", "make the challenger (or --version) the champion"),
                         ("rollback", "drop the challenger; with none, move champion back to the previous version"),
                         ("status", "aliases, versions and every transition with its reason")):
        q = dsub.add_parser(action, help=text)
        q.add_argument("name", help="registered model name (register.name)")
        q.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db)")
        if action == "promote":
            q.add_argument("--version", help="promote this version instead of the challenger")
        if action != "status":
            q.add_argument("--reason", default=f"manual {action}", help="why (kept in the transition log)")
        else:
            q.add_argument("--json", action="store_true", help="print JSON")
        q.set_defaults(func=cmd_deploy, action=action)


def _serve_config(args):
    """(serve section, tracking URI, the config key the device came from — for the error that names it)."""
    from trainforge.config import load_config
    from trainforge.errors import UserError
    from trainforge.serve.config import ServeConfig

    run_device = None  # the top-level `device:` of --config or of the run's resolved config
    if args.config:
        cfg = load_config(args.config, args.overrides)
        serve = cfg.serve or ServeConfig()
        uri, run_device = cfg.tracking.uri, cfg.device
    else:
        if args.overrides:
            raise UserError("overrides need --config FILE (they override that file's serve: section)")
        serve, uri = ServeConfig(), None
        resolved = Path(args.model) / "config.resolved.yaml"
        if resolved.is_file():  # a run: use its serve: section when it has one
            run_cfg = load_config(resolved)
            serve, uri, run_device = run_cfg.serve or serve, run_cfg.tracking.uri, run_cfg.device
    # --device, else serve.device, else the top-level device:, else auto
    device, key = next((v, k) for v, k in ((args.device, "--device"), (serve.device, "serve.device"),
                                            (run_device, "device"), ("auto", "--device")) if v is not None)
    update = {k: v for k, v in (("host", args.host), ("port", args.port), ("dtype", args.dtype)) if v is not None}
    return serve.model_copy(update=update | {"device": device}), args.tracking_uri or uri, key


def cmd_serve(args) -> int:
    from trainforge.console import console
    from trainforge.device import describe, resolve_device
    from trainforge.serve.runner import require_key_off_loopback, serve_foreground
    from trainforge.serve.server import ModelSource, ServerState

    cfg, uri, device_key = _serve_config(args)
    api_key = os.environ.get(cfg.api_key_env) or None
    require_key_off_loopback(cfg.host, api_key, cfg.api_key_env)
    device = resolve_device(cfg.device, device_key)  # a missing GPU: exit 2 before any model loads
    source = ModelSource.parse(args.model, uri)
    events = Path(args.events) if args.events else (source.path / "monitor" / "events.jsonl" if source.kind == "run" else None)
    from trainforge.serve.app import create_app

    state = ServerState(cfg, source, api_key, events, device=device)
    auth = f"bearer token from ${cfg.api_key_env}" if api_key else "no auth (loopback only)"
    where = describe(device)
    dtype = str(state.dtype).removeprefix("torch.")
    console.print(f"[bold]serving[/] {args.model} as `{state.model_name}` on http://{cfg.host}:{cfg.port}/v1  ·  "
                  f"/metrics  ·  {auth}  ·  {where['device']} ({where.get('name', '?')}, {dtype})")
    serve_foreground(create_app(state), cfg.host, cfg.port, cfg.drain_seconds)
    return 0


def cmd_monitor_drift(args) -> int:
    from trainforge.console import console
    from trainforge.serve.monitor import drift_report_for_run, read_texts

    run = Path(args.reference)
    report = drift_report_for_run(run, read_texts(Path(args.current), args.text_field))
    report["current"] = str(args.current)
    out = run / "monitor" / "drift.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    console.print(f"{'feature':<10} {'PSI':>8} {'KL':>8}  verdict   (thresholds PSI {report['psi_threshold']}, KL {report['kl_threshold']})")
    for feature, s in report["features"].items():
        verdict = "[red]DRIFT[/]" if s["drifted"] else "[green]ok[/]"
        console.print(f"{feature:<10} {s['psi']:>8.4f} {s['kl']:>8.4f}  {verdict}")
    drifted = report["drifted"]
    console.print(f"{report['n']:,} inputs vs {report['reference_n']:,} reference texts: "
                  + (f"[red]drift in {', '.join(drifted)}[/]" if drifted else "[green]no drift[/]"))
    console.print(f"[bold]report[/] {out}  (trainforge report {run} adds it to report.html)")
    return 0


def cmd_deploy(args) -> int:
    from trainforge.console import console
    from trainforge.serve import registry

    uri = args.tracking_uri or registry.default_uri()
    if args.action == "promote":
        event = registry.promote(uri, args.name, args.reason, args.version)
    elif args.action == "rollback":
        event = registry.rollback(uri, args.name, args.reason)
    else:
        status = registry.status(uri, args.name)
        if args.json:
            print(json.dumps(status, indent=2))
            return 0
        aliases = ", ".join(f"@{a} → v{v}" for a, v in sorted(status["aliases"].items())) or "no aliases"
        console.print(f"[bold]{status['name']}[/]  {aliases}  ·  {len(status['versions'])} versions")
        for v in status["versions"]:
            note = f"  [red]rolled back: {v['rolled_back']}[/]" if v["rolled_back"] else ""
            console.print(f"  v{v['version']}  run {v['run_id']}{note}")
        console.print("[bold]transitions[/]")
        for t in status["transitions"]:
            console.print(f"  {t['time']}  {t['action']:<20} {t['from'] or '-'} → {t['to'] or '-'}  by {t['by']}: {t['reason']}")
        return 0
    console.print(f"{event['action']}: {event['from'] or '-'} → {event['to'] or '-'} ({event['reason']})")
    return 0
