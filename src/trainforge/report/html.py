"""report.html: one page a person reads — the summary first, then funnel, curves, metrics beside the baseline, plots.

The page is assembled from sections; each section is a function `(run_dir) -> str | None` that
reads files the stages wrote and returns an HTML fragment (starting with its `<h2>`), or None when
its stage did not run. Order:

    summary        verdict vs baseline (paired test), deploy candidate, registry, status, machine
    contents       links to every section (and its <h3> parts)
    run, lineage   the stages' table; config, data and config hashes, the command that reproduces it
    <stages>       the section each stage (or config section) declares as `report` in its spec
                   (trainforge.stages), in stage order

Every section is wrapped in `<section id="<function name>">`, so `report.html#evaluation` is a stable
link. Images are embedded, so the file travels alone. Tables: text left, numbers right, long text
cut with "…" and the full text on hover, each table in a horizontal scroll box for narrow screens;
text from the data carries the data's `lang` (zh or en), so a browser picks the right CJK glyphs.
"""

from __future__ import annotations

import base64
import contextvars
import html
import io
import json
import re
from pathlib import Path

from trainforge import stages
from trainforge.paths import REPORT

SUMMARY = "trainforge.report.sections:summary"
OVERVIEW = "trainforge.report.sections:overview"
LINEAGE = "trainforge.report.lineage:lineage"

DATA_LANG: contextvars.ContextVar[str] = contextvars.ContextVar("trainforge_report_data_lang", default="en")
"""The language of the run's texts ("zh" or "en"), set by write_report from data/train.jsonl."""

CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,"Noto Sans CJK SC","Noto Sans SC",sans-serif;max-width:1100px;
margin:1.2em auto;padding:0 1em;color:#1d2330;line-height:1.45}
h1{margin:.1em 0 .2em;font-size:1.6em} h2{border-bottom:2px solid #e5e8ef;padding-bottom:.2em;margin-top:1.8em}
h3{margin-top:1.4em} a{color:#2f5fb3}
.scroll{overflow-x:auto;max-width:100%;margin:.6em 0}
table{border-collapse:collapse} td,th{border:1px solid #d9dde6;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f9;white-space:nowrap} td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.text{max-width:28em;min-width:8em}
.clip{display:inline-block;max-width:28em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;vertical-align:bottom}
.ok{color:#16794c;font-weight:600}.bad{color:#b42318;font-weight:600}.warn{color:#a15c00;font-weight:600}.muted{color:#667085}
.verdict{padding:.6em 1em;border-radius:6px;margin:.6em 0}.verdict.ok{background:#e7f6ee}.verdict.bad{background:#fdecea}
.verdict.warn{background:#fff4e0}
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(195px,1fr));gap:.6em;margin:.6em 0}
.card{border:1px solid #d9dde6;border-radius:6px;padding:.5em .8em;background:#fafbfc}
.card h4{margin:0 0 .3em;font-size:.85em;text-transform:uppercase;letter-spacing:.04em;color:#667085}
.card p{margin:.15em 0}
nav.toc{border:1px solid #e5e8ef;border-radius:6px;padding:.4em 1em;background:#fafbfc}
nav.toc ol{margin:.2em 0;padding-left:1.4em} nav.toc ol ol{font-size:.92em}
@media(min-width:800px){nav.toc>ol{columns:2;column-gap:2em} nav.toc li{break-inside:avoid}}
img{max-width:100%;border:1px solid #eee} img.natural{max-width:none}
.plots{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-start}
code,pre{background:#f3f5f9;padding:0 .25em;overflow-wrap:anywhere} pre{padding:.6em;overflow-x:auto;white-space:pre}
details{margin:.5em 0} summary{cursor:pointer}
"""


def esc(x) -> str:
    return html.escape(str(x))


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def clip(text, n: int = 80) -> str:
    """Data text for a cell or a line: cut at n characters with "…", the whole text on hover, in the data's lang."""
    s = str(text)
    lang = DATA_LANG.get()
    if len(s) <= n:
        return f"<span lang='{lang}'>{esc(s)}</span>"
    return f"<span class='clip' lang='{lang}' title='{esc(s)}'>{esc(s[: n - 1])}…</span>"


def img_tag(png_path: Path, alt: str, natural: bool = False) -> str:
    """An embedded PNG; `natural` shows it at its own size (in a scroll box) so its labels keep their size."""
    if not png_path.is_file():
        return ""
    data = base64.b64encode(png_path.read_bytes()).decode()
    tag = f'<img alt="{esc(alt)}" title="{esc(alt)}"{" class=natural" if natural else ""} src="data:image/png;base64,{data}">'
    return f"<div class='scroll'>{tag}</div>" if natural else tag


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed), with a CJK font when one is installed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainforge.evaluate.fonts import setup_cjk_font

    setup_cjk_font()
    return plt


def fig_tag(fig, alt: str, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return f'<img alt="{esc(alt)}" title="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


_NUMBER = re.compile(r"^[\s+\-−]*[\d.,]+(e[+-]?\d+)?\s*(%|x|×|ms|s|MB|GB|M)?(\s*/\s*[\d.,]+\s*(%|x|ms)?)?$|^[—–-]$")


def is_number_cell(cell) -> bool:
    """Numbers (and "—" for none) right-align; everything else is text and left-aligns."""
    if isinstance(cell, bool):
        return False
    if isinstance(cell, (int, float)):
        return True
    s = re.sub(r"<[^>]+>", "", str(cell)).strip()
    return bool(s) and bool(_NUMBER.match(s))


def table(header: list[str], rows: list[list]) -> str:
    """A table in a scroll box. A column whose cells are all numbers (or "—") is right-aligned, header too;
    any other column is text, left-aligned — a column mixing both reads best left-aligned."""
    def blank(c) -> bool:
        return str(c).strip() in ("", "—")

    numeric = []
    for j in range(len(header)):
        cells = [r[j] for r in rows if j < len(r) and not blank(r[j])]
        numeric.append(bool(cells) and all(is_number_cell(c) for c in cells))

    def cell(c, j: int) -> str:
        s = str(c)
        body = s if s.startswith("<") else esc(s)
        return f"<td class='num'>{body}</td>" if j < len(numeric) and numeric[j] else f"<td>{body}</td>"

    head = "".join(f"<th{' class=num' if n else ''}>{esc(h)}</th>" for h, n in zip(header, numeric))
    body = "".join("<tr>" + "".join(cell(c, j) for j, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def report_sections() -> list[str]:
    """`module:function` of every section of the page, in page order."""
    return [SUMMARY, OVERVIEW, LINEAGE, *(s.report for s in stages.specs() if s.report)]


def data_language(run_dir: Path) -> str:
    """zh when CJK characters are at least a third of the letters in the first lines of the training split."""
    from trainforge.text_scripts import CJK_UNIFIED

    cjk = re.compile(f"[{CJK_UNIFIED}]")
    path = Path(run_dir) / "data" / "train.jsonl"
    han = letters = 0
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f):
                if n >= 200:
                    break
                text = str(json.loads(line).get("text") or "")
                han += len(cjk.findall(text))
                letters += sum(ch.isalpha() for ch in text)
    except (OSError, json.JSONDecodeError):
        return "en"
    return "zh" if letters and han / letters >= 1 / 3 else "en"


_H = re.compile(r"<h([23])([^>]*)>(.*?)</h\1>", re.S)


def _slug(text: str) -> str:
    plain = re.sub(r"<[^>]+>", "", text).lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-") or "part"


def anchor_section(section_id: str, fragment: str) -> tuple[str, list[tuple[int, str, str]]]:
    """The fragment in a <section id=section_id>, each <h3> given the id `<section_id>-<slug>`; and its headings
    (level, id, text) for the contents (the first <h2> links to the section itself)."""
    headings: list[tuple[int, str, str]] = []
    used: set[str] = set()

    def name(m: re.Match) -> str:
        level, attrs, inner = int(m.group(1)), m.group(2), m.group(3)
        if "id=" in attrs:
            hid = re.search(r"id=['\"]?([^'\" >]+)", attrs).group(1)
        elif level == 2 and not any(h[0] == 2 for h in headings):
            hid = section_id  # the <section> carries it
        else:
            hid = base = f"{section_id}-{_slug(inner)}"
            k = 2
            while hid in used:
                hid, k = f"{base}-{k}", k + 1
            attrs += f" id='{hid}'"
        used.add(hid)
        headings.append((level, hid, re.sub(r"<[^>]+>", "", inner)))
        return f"<h{level}{attrs}>{inner}</h{level}>"

    body = _H.sub(name, fragment)
    return f"<section id='{section_id}'>{body}</section>", headings


def contents(headings: list[tuple[int, str, str]]) -> str:
    """The contents: each <h2> a numbered link, its <h3>s a list under it."""
    groups: list[tuple[str, str, list[tuple[str, str]]]] = []
    for level, hid, text in headings:
        if level == 2 or not groups:
            groups.append((hid, text, []))
        else:
            groups[-1][2].append((hid, text))
    items = "".join(
        f"<li><a href='#{hid}'>{esc(text)}</a>"
        + (f"<ol>{''.join(f'<li><a href=#{h}>{esc(t)}</a></li>' for h, t in subs)}</ol>" if subs else "") + "</li>"
        for hid, text, subs in groups)
    return f"<nav class='toc' id='contents'><b>Contents</b><ol>{items}</ol></nav>"


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    token = DATA_LANG.set(data_language(run_dir))
    try:
        parts, headings = [], []
        for entry in report_sections():
            func = entry.partition(":")[2]
            try:
                fragment = stages.load(entry)(run_dir)
            except Exception as e:  # noqa: BLE001 — one broken section must not cost the whole report
                fragment = f"<h2>{esc(func)}</h2><p class='bad'>section failed: {esc(type(e).__name__)}: {esc(e)}</p>"
            if fragment:
                body, found = anchor_section(func, fragment)
                parts.append(body)
                headings += found
    finally:
        DATA_LANG.reset(token)
    toc = contents(headings)
    if parts:  # the contents right after the summary (or first, when there is no summary)
        at = 1 if parts[0].startswith("<section id='summary'>") else 0
        parts.insert(at, toc)
    title = esc(run_dir.name)
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>trainforge · {title}</title>"
        f"<style>{CSS}</style></head><body><h1>trainforge · {title}</h1>{''.join(parts)}</body></html>"
    )
    out = run_dir / REPORT
    out.write_text(page, encoding="utf-8")
    return out
