"""The report's collect section: the funnel from `fetched`, per source, with what was not fetched and why."""

from __future__ import annotations

from pathlib import Path

from trainforge.paths import COLLECT_STATS
from trainforge.report.html import esc, read_json, table

SHOWN = ("pages", "requests", "retries", "resumed", "robots_forbidden", "offsite_filtered", "depth_limited", "finish_reason",
         "files", "other_records")


def collect_section(run_dir: Path) -> str | None:
    s = read_json(run_dir / COLLECT_STATS)
    if not s:
        return None
    rows = []
    for name, st in s["sources"].items():
        notes = ", ".join(f"{k} {st[k]}" for k in SHOWN if st.get(k) not in (None, 0, False))
        rows.append([name, st["kind"], f"{st['fetched']:,}", f"{st['kept']:,}",
                     ", ".join(f"{k}: {v:,}" for k, v in st["failed"].items()), f"{st['seconds']:.1f}", notes])
    failed = sum(s["failed"].values())
    ok = s["fetched"] == s["kept"] + failed
    return ("<h2>Collect</h2>"
            + table(["source", "kind", "fetched", "kept", "failed by reason", "seconds", "notes"], rows)
            + f"<p class='{'ok' if ok else 'bad'}'>fetched {s['fetched']:,} = kept {s['kept']:,} + failed {failed:,} "
            f"{'✓' if ok else '✗ does not reconcile'} · every failure in collect/failed.jsonl; kept records are the data "
            f"stage's source <code>{esc('collect/records.jsonl')}</code></p>")
