"""Offline drift: a file of inputs against a run's reference profile (`trainforge monitor drift`),
and the report section that shows the last such comparison."""

from __future__ import annotations

import json
from pathlib import Path

from trainforge.errors import UserError


def read_texts(path: Path, field: str = "text") -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    texts = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not valid JSON ({e.msg}); one JSON object per line") from None
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise UserError(f"{path}:{n}: expected an object with a string field '{field}' (--text-field names another)")
            texts.append(row[field])
    if not texts:
        raise UserError(f"{path}: no inputs")
    return texts


def drift_config_of_run(run: Path):
    from trainforge.config import load_config
    from trainforge.serve.config import DriftConfig

    resolved = run / "config.resolved.yaml"
    cfg = load_config(resolved) if resolved.is_file() else None
    return (cfg.serve.drift if cfg is not None and cfg.serve is not None else DriftConfig()), (cfg.seed if cfg else 0)


def drift_report_for_run(run: Path, texts: list[str]) -> dict:
    from trainforge.serve.drift import compare_texts
    from trainforge.serve.engine import load_engine
    from trainforge.serve.server import PROFILE_FILE, profile_from_jsonl

    if not (run / "model").is_dir():
        raise UserError(f"{run}: not a run directory with a model/ (pass runs/<name>)")
    cfg, seed = drift_config_of_run(run)
    engine = load_engine(run / "model")
    saved = run / "register" / PROFILE_FILE
    if saved.is_file():
        profile = json.loads(saved.read_text())
    elif (run / "data" / "train.jsonl").is_file():
        profile = profile_from_jsonl(run / "data" / "train.jsonl", engine, cfg, seed)
    else:
        raise UserError(f"{run}: no register/{PROFILE_FILE} and no data/train.jsonl to build a reference from")
    predicted = None
    if engine.kind == "classifier" and profile.get("labels"):
        predicted = []
        for i in range(0, len(texts), 64):
            predicted += [max(p, key=p.get) for p in engine.classify(texts[i : i + 64])]
    return compare_texts(profile, texts, predicted, cfg, engine.token_ids)


def drift_section(run_dir: Path) -> str | None:
    """Report section: the last `trainforge monitor drift` of this run."""
    from trainforge.report.html import esc, read_json, table

    report = read_json(run_dir / "monitor" / "drift.json")
    if not report:
        return None
    rows = [[f, f"{s['psi']:.4f}", f"{s['kl']:.4f}", "DRIFT" if s["drifted"] else "ok"] for f, s in report["features"].items()]
    verdict = (f'<p class="verdict bad">Drift in {esc(", ".join(report["drifted"]))}</p>' if report["drifted"]
               else '<p class="verdict ok">No drift against the training data</p>')
    return (f"<h2>Drift monitor</h2>{verdict}<p class=muted>{report['n']:,} inputs from {esc(report.get('current', '?'))} vs "
            f"{report['reference_n']:,} training texts; thresholds PSI {report['psi_threshold']}, KL {report['kl_threshold']}</p>"
            + table(["feature", "PSI", "KL(live‖ref)", "verdict"], rows))
