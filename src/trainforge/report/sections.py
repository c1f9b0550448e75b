"""The report's built-in sections: overview and data funnel (training lives in trainforge.train.report, evaluation in trainforge.evaluate.report)."""

from __future__ import annotations

from pathlib import Path

from trainforge.report.html import esc, fig_tag, img_tag, read_json, table


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overview(run_dir: Path) -> str | None:
    m = read_json(run_dir / "manifest.json")
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


def data_funnel(run_dir: Path) -> str | None:
    s = read_json(run_dir / "data" / "stats.json")
    if not s:
        return None
    rows = [["read", s["read"], "", ""]]
    rows.append(["quarantined (unreadable)", s["quarantined"], "", ", ".join(f"{k}: {v}" for k, v in s["steps"]["read"].get("quarantine_reasons", {}).items())])
    for step, st in s["steps"].items():
        if step == "read":
            continue
        rows.append([step, st["docs_out"], f"{st['docs_in'] - st['docs_out']:,} dropped", ", ".join(f"{k}: {v:,}" for k, v in st["dropped"].items())])
    rows.append(["kept", s["kept"], "", " / ".join(f"{k} {v:,}" for k, v in s["splits"].items())])
    plt = _plt()
    names = ["read"] + [k for k in s["steps"] if k != "read"]
    counts = [s["steps"]["read"]["docs_out"] + s["quarantined"]] + [s["steps"][k]["docs_out"] for k in names[1:]]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(names)))
    ax.barh(names[::-1], counts[::-1], color="#4e79a7")
    for y, c in enumerate(counts[::-1]):
        ax.text(c, y, f" {c:,}", va="center")
    ax.set_xlabel("documents")
    ax.set_title("data funnel")
    examples = "".join(
        f"<li><b>{esc(reason)}</b>: " + " · ".join(f"<code>{esc(t[:80])}</code>" for t in texts) + "</li>"
        for reason, texts in s.get("examples", {}).items()
    )
    check = s["read"] == s["kept"] + s["quarantined"] + sum(s["dropped"].values())
    return (
        "<h2>Data</h2>" + table(["step", "documents out", "change", "by reason"], rows)
        + f"<p class='{'ok' if check else 'bad'}'>read {s['read']:,} = kept {s['kept']:,} + quarantined {s['quarantined']:,} "
        f"+ dropped {sum(s['dropped'].values()):,} {'✓' if check else '✗ does not reconcile'}</p>"
        + fig_tag(fig, "data funnel") + (f"<p>Examples of dropped documents:</p><ul>{examples}</ul>" if examples else "")
    )
