"""The report's built-in sections: overview, data funnel, training, evaluation."""

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


def training(run_dir: Path) -> str | None:
    st = read_json(run_dir / "model" / "trainer_state.json")
    if not st:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    hist = st["log_history"]
    window = max(1, len(hist) // 50)
    xs = [h["step"] for h in hist]
    ys = [h["loss"] for h in hist]
    smooth = [sum(ys[max(0, i - window + 1): i + 1]) / len(ys[max(0, i - window + 1): i + 1]) for i in range(len(ys))]
    ax.plot(xs, ys, color="#c6d3e6", lw=0.8, label="train loss")
    ax.plot(xs, smooth, color="#4e79a7", lw=1.6, label=f"train loss (mean of {window})")
    if st.get("eval_history"):
        ev = st["eval_history"]
        ax.plot([e["step"] for e in ev], [e["val_loss"] for e in ev], "o-", color="#e15759", label="val loss")
        ax2 = ax.twinx()
        ax2.plot([e["step"] for e in ev], [e["val_accuracy"] for e in ev], "s--", color="#59a14f", label="val accuracy")
        ax2.set_ylabel("val accuracy")
        ax2.legend(loc="center right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    return (
        "<h2>Training</h2>"
        f"<p>{st['parameters'] / 1e6:.2f}M parameters ({st['trainable_parameters'] / st['parameters']:.0%} trainable), "
        f"{st['steps']:,} steps in {st['train_seconds']:.0f}s, {st['tokens_per_second']:,.0f} tokens/s; "
        f"best val accuracy {st['best'].get('val_accuracy', float('nan')):.4f} at step {st['best'].get('step')}.</p>"
        + fig_tag(fig, "training curves")
    )


def evaluation(run_dir: Path) -> str | None:
    m = read_json(run_dir / "eval" / "metrics.json")
    if not m:
        return None
    keys = [k for k in m["model"] if isinstance(m["model"][k], (int, float))]
    base = m.get("baseline") or {}
    rows = [[k, f"{m['model'][k]:.4f}", f"{base[k]:.4f}" if k in base else "—",
             f"{m['model'][k] - base[k]:+.4f}" if k in base else "—"] for k in keys]
    verdict = ""
    if base:
        wins = m.get("model_beats_baseline")
        verdict = (
            f"<div class='verdict {'ok' if wins else 'bad'}'>The model {'beats' if wins else '<b>loses to</b>'} the "
            f"{esc(base.get('name', 'baseline'))} baseline on accuracy: {m['model']['accuracy']:.4f} vs "
            f"{base['accuracy']:.4f} on {m['n']:,} {esc(m['split'])} examples.</div>"
        )
    return (
        f"<h2>Evaluation ({esc(m['split'])} split, n = {m['n']:,})</h2>{verdict}"
        + table(["metric", "model", "baseline", "model − baseline"], rows)
        + img_tag(run_dir / "eval" / "confusion_matrix.png", "confusion matrix")
    )
