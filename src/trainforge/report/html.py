"""report.html: one page a person reads — funnel, curves, metrics beside the baseline, plots.

The page is assembled from sections; each section is a function `(run_dir) -> str | None` that
reads files the stages wrote and returns an HTML fragment, or None when its stage did not run.
The overview comes first, then the section each stage (or config section) declares as `report` in
its spec (trainforge.stages), in stage order. Images are embedded, so the file travels alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from trainforge import stages
from trainforge.paths import REPORT

OVERVIEW = "trainforge.report.sections:overview"

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,"Noto Sans CJK SC",sans-serif;max-width:1080px;margin:2em auto;
padding:0 1em;color:#1d2330;line-height:1.45}
h1{margin-bottom:.1em} h2{border-bottom:2px solid #e5e8ef;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #d9dde6;padding:.3em .7em;text-align:right}
th{background:#f3f5f9} td:first-child,th:first-child{text-align:left}
.ok{color:#16794c;font-weight:600}.bad{color:#b42318;font-weight:600}.muted{color:#667085}
.verdict{padding:.6em 1em;border-radius:6px;margin:.6em 0}.verdict.ok{background:#e7f6ee}.verdict.bad{background:#fdecea}
img{max-width:100%;border:1px solid #eee} code{background:#f3f5f9;padding:0 .25em}
"""


def esc(x) -> str:
    return html.escape(str(x))


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def img_tag(png_path: Path, alt: str) -> str:
    if not png_path.is_file():
        return ""
    data = base64.b64encode(png_path.read_bytes()).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fig_tag(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if str(c).startswith('<') else esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def report_sections() -> list[str]:
    """`module:function` of every section of the page, in page order."""
    return [OVERVIEW, *(s.report for s in stages.specs() if s.report)]


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    parts = []
    for entry in report_sections():
        func = entry.partition(":")[2]
        try:
            fragment = stages.load(entry)(run_dir)
        except Exception as e:  # noqa: BLE001 — one broken section must not cost the whole report
            fragment = f"<h2>{esc(func)}</h2><p class='bad'>section failed: {esc(type(e).__name__)}: {esc(e)}</p>"
        if fragment:
            parts.append(fragment)
    title = esc(run_dir.name)
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>trainforge · {title}</title>"
        f"<style>{CSS}</style></head><body><h1>trainforge · {title}</h1>{''.join(parts)}</body></html>"
    )
    out = run_dir / REPORT
    out.write_text(page, encoding="utf-8")
    return out
