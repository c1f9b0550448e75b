"""The report's built-in sections: the summary (first on the page) and the run overview. Every other
section belongs to a stage and is declared in its spec (trainforge.stages, `report=`), e.g.
trainforge.data.report; the lineage section is trainforge.report.lineage.

The summary answers, on one screen, what a lead asks first: is the model better than the simple
baseline (a paired test on the same examples, not two numbers side by side), what would be deployed
and how much faster it is at batch 1 and 32, where it is registered, did the run finish and how long
it took, and on what machine.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from trainforge.paths import COMPRESS_CANDIDATE, EVAL_METRICS, MANIFEST, REGISTERED
from trainforge.report.html import clip, esc, read_json, table


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def _when(stamp) -> str:
    if not stamp:
        return "—"
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").strftime("%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        return str(stamp)


def paired_from_predictions(run_dir: Path, metrics: dict) -> dict | None:
    """metrics.json's "paired", or (a run evaluated before it existed) the same test on eval/predictions.jsonl."""
    if metrics.get("paired"):
        return metrics["paired"]
    from trainforge.data.io import read_jsonl

    path = run_dir / "eval" / "predictions.jsonl"
    if not path.is_file():
        return None
    rows = read_jsonl(path)
    if not rows or "baseline_pred" not in rows[0]:
        return None
    from trainforge.evaluate.paired import paired_comparison

    return paired_comparison([r["label"] for r in rows], [r["pred"] for r in rows], [r["baseline_pred"] for r in rows])


def _verdict_card(run_dir: Path) -> str:
    m = read_json(run_dir / EVAL_METRICS)
    if not m:
        return "<div class='card'><h4>Verdict</h4><p class='muted'>Not evaluated (no eval: section).</p></div>"
    base = m.get("baseline")
    key = m.get("headline", "accuracy")
    model_v = m.get("model", {}).get(key)
    if not base or not isinstance(model_v, (int, float)):
        return (f"<div class='card'><h4>Verdict</h4><p>{esc(key)} {model_v if model_v is not None else '—'}; "
                f"<span class='warn'>no baseline was run</span> (eval.baseline).</p></div>")
    name = esc(base.get("name", "baseline"))
    paired = paired_from_predictions(run_dir, m) if key == "accuracy" else None
    line = f"{esc(key)} {model_v:.4f} vs {base[key]:.4f} on {m['n']:,} {esc(m['split'])} examples"
    if paired:
        lo, hi = paired["ci95"]
        sig = paired["significant"]
        better = paired["accuracy_difference"] > 0
        cls = "ok" if sig and better else "bad" if sig else "warn"
        head = (f"Beats the {name} baseline" if sig and better else f"Loses to the {name} baseline" if sig
                else f"No significant difference from the {name} baseline")
        detail = (f"<p>{line}: {paired['accuracy_difference'] * 100:+.2f} points, 95% CI {lo * 100:+.1f} to {hi * 100:+.1f} "
                  f"(paired bootstrap, {paired['bootstrap_samples']:,} resamples).</p>"
                  f"<p>McNemar exact p = <b>{paired['mcnemar_p']:.3g}</b>: {paired['only_model_right']:,} examples only the "
                  f"model gets right, {paired['only_baseline_right']:,} only the baseline.</p>")
    else:
        wins = m.get("model_beats_baseline")
        cls = "ok" if wins else "bad"
        head = f"{'Beats' if wins else 'Loses to'} the {name} baseline"
        detail = f"<p>{line}{' (lower is better)' if 'perplexity' in key else ''}; no paired test for this metric.</p>"
    return f"<div class='card'><h4>Verdict</h4><p class='{cls}'>{head}</p>{detail}<p><a href='#evaluation'>evaluation →</a></p></div>"


def _candidate_card(run_dir: Path) -> str:
    cand = read_json(run_dir / COMPRESS_CANDIDATE)
    if cand is None:
        return "<div class='card'><h4>Deploy candidate</h4><p class='muted'>Not compressed: model/ is the candidate.</p></div>"
    if not cand.get("name"):
        return ("<div class='card'><h4>Deploy candidate</h4><p class='bad'>No variant passed its gates</p>"
                "<p>model/ stays the one registered and served.</p></div>")
    measured = read_json(run_dir / "compress" / "measurements.json") or {}
    metric = measured.get("metric", "accuracy")
    by_name = {v["name"]: v for v in measured.get("variants", [])}
    v, ref = by_name.get(cand["name"], {}), by_name.get("original", {})
    gate = cand.get("gate") or {}
    slower = gate.get("slower_at") or [b for b in (1, 32) if isinstance(v.get(f"speedup_b{b}"), (int, float)) and v[f"speedup_b{b}"] < 1]

    def speed(b: int) -> str:
        s = v.get(f"speedup_b{b}")
        if not isinstance(s, (int, float)):
            return f"batch {b}: —"
        return f"<span class='{'bad' if s < 1 else 'ok'}'>{s:.2f}x</span> at batch {b}"

    change = ""
    if isinstance(v.get("metrics", {}).get(metric), (int, float)) and isinstance(ref.get("metrics", {}).get(metric), (int, float)):
        change = f"; {metric} {(v['metrics'][metric] - ref['metrics'][metric]) * 100:+.2f} points vs the original"
    warn = (f"<p class='warn'>Slower than the original at batch {' and '.join(map(str, slower))}.</p>" if slower else "")
    return (f"<div class='card'><h4>Deploy candidate</h4><p><b>{esc(cand['name'])}</b> "
            f"(<code>{esc(cand.get('path', ''))}</code>)</p><p>{speed(1)}, {speed(32)}{change}.</p>{warn}"
            "<p><a href='#compression'>compression →</a></p></div>")


def _registry_card(run_dir: Path, manifest: dict) -> str:
    reg = read_json(run_dir / REGISTERED)
    run_id = manifest.get("mlflow_run_id")
    tracked = f"MLflow run <code>{esc(run_id)}</code>" if run_id else "<span class='muted'>MLflow run not tracked (tracking.enabled: false)</span>"
    if reg:
        where = (f"<p><b>{esc(reg['name'])}</b> version {esc(reg['version'])} as <code>@{esc(reg['alias'])}</code> "
                 f"({esc(reg.get('source', ''))})</p><p>serve: <code>trainforge serve models:/{esc(reg['name'])}@{esc(reg['alias'])}</code></p>")
    else:
        where = "<p class='muted'>Not registered (no register: section).</p>"
    link = "<p><a href='#registration'>registration →</a></p>" if reg else ""
    return f"<div class='card'><h4>Registry</h4>{where}<p>{tracked}</p>{link}</div>"


def _run_card(manifest: dict) -> str:
    status = manifest.get("status") or ("ok" if all(r.get("status") == "ok" for r in manifest.get("stages", {}).values()) else "failed")
    cls = "ok" if status == "ok" else "warn" if status == "running" else "bad"
    failed = [n for n, r in manifest.get("stages", {}).items() if r.get("status") not in ("ok", None)]
    return (f"<div class='card'><h4>Run</h4><p>status <span class='{cls}'>{esc(status)}</span>"
            + (f" ({esc(', '.join(failed))} {'failed' if status != 'running' else 'not finished'})" if failed else "") + "</p>"
            f"<p>start {esc(_when(manifest.get('started') or manifest.get('updated')))}</p>"
            f"<p>end {esc(_when(manifest.get('finished')))}</p>"
            f"<p>duration {esc(_duration(manifest.get('seconds')))}</p><p><a href='#overview'>stages →</a> · "
            f"<a href='#lineage'>reproduce →</a></p></div>")


def _machine_card(manifest: dict) -> str:
    mach = manifest.get("machine") or {}
    if not mach:
        return "<div class='card'><h4>Machine</h4><p class='muted'>not recorded</p></div>"
    gpus = mach.get("gpus") or []
    gpu = ", ".join(gpus) if gpus else "no GPU"
    return (f"<div class='card'><h4>Machine</h4><p>{esc(mach.get('cpu', '?'))}</p>"
            f"<p>{esc(mach.get('cpus', '?'))} CPU threads, torch using {esc(mach.get('torch_threads', '?'))}</p>"
            f"<p>{esc(gpu)}</p><p class='muted'>{esc(mach.get('platform', ''))}</p></div>")


def summary(run_dir: Path) -> str | None:
    """First on the page: the five answers a lead reads in one screen."""
    manifest = read_json(run_dir / MANIFEST)
    if not manifest:
        return None
    cards = [_verdict_card(run_dir), _candidate_card(run_dir), _registry_card(run_dir, manifest), _run_card(manifest),
             _machine_card(manifest)]
    return f"<h2>Summary</h2><div class='summary'>{''.join(cards)}</div>"


def overview(run_dir: Path) -> str | None:
    m = read_json(run_dir / MANIFEST)
    if not m:
        return None
    rows = []
    for name, rec in m.get("stages", {}).items():
        status = rec.get("status", "?")
        cls = "ok" if status == "ok" else "bad"
        rows.append([name, f"<span class='{cls}'>{esc(status)}</span>", f"{rec.get('seconds', 0):.1f}",
                     _when(rec.get("finished"))[11:19] or "—", len(rec.get("outputs", {})), clip(rec.get("error", ""), 120) if rec.get("error") else ""])
    v = m.get("versions", {})
    return (
        "<h2>Stages</h2>"
        f"<p class='muted'>git {esc((m.get('git_commit') or 'none')[:10])} · "
        f"torch {esc(v.get('torch', '?'))} · transformers {esc(v.get('transformers', '?'))} · "
        f"MLflow run {esc(m.get('mlflow_run_id') or 'not tracked')}</p>"
        + table(["stage", "status", "seconds", "finished at", "files written", "error"], rows)
    )
