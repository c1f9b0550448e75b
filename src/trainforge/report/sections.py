"""The report's built-in section, first on the page: the run overview. Every other section belongs to
a stage and is declared in its spec (trainforge.stages, `report=`), e.g. trainforge.data.report."""

from __future__ import annotations

from pathlib import Path

from trainforge.paths import MANIFEST
from trainforge.report.html import esc, read_json, table


def overview(run_dir: Path) -> str | None:
    m = read_json(run_dir / MANIFEST)
    if not m:
        return None
    rows = []
    for name, rec in m.get("stages", {}).items():
        status = rec.get("status", "?")
        cls = "ok" if status == "ok" else "bad"
        rows.append([name, f"<span class='{cls}'>{esc(status)}</span>", f"{rec.get('seconds', 0):.1f}",
                     len(rec.get("outputs", {})), esc(rec.get("error", ""))])
    v = m.get("versions", {})
    return (
        "<h2>Run</h2>"
        f"<p class='muted'>updated {esc(m.get('updated', ''))} · git {esc((m.get('git_commit') or 'none')[:10])} · "
        f"torch {esc(v.get('torch', '?'))} · transformers {esc(v.get('transformers', '?'))} · "
        f"MLflow run {esc(m.get('mlflow_run_id') or 'not tracked')}</p>"
        + table(["stage", "status", "seconds", "files written", "error"], rows)
    )
