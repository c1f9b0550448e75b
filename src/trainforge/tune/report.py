"""runs/<name>-tune/report.html: the study on one page, built from the run report's page helpers.

Sections: the result (best trial, or the Pareto front), the trial table, the optimisation history
(value per trial and best so far), the intermediate curves the pruner saw, fANOVA parameter importances,
and for two objectives the front plotted against the dominated trials.
"""

from __future__ import annotations

from pathlib import Path

from trainforge.report.html import CSS, esc, fig_tag, pyplot, table


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def result_section(summary: dict) -> str:
    if summary.get("pareto"):
        rows = [[t["number"], *(_fmt(v) for v in t["values"]), esc(", ".join(f"{k}={_fmt(v)}" for k, v in t["params"].items())),
                 f"<code>{esc(t['config'])}</code>"] for t in summary["pareto"]]
        return ("<h2>Pareto front</h2><p>Trials no other trial beats on every objective; each one's config is written out.</p>"
                + table(["trial", *summary["metrics"], "parameters", "config"], rows))
    if summary.get("best_trial") is None:
        return "<h2>Result</h2><p class='bad'>no trial completed</p>"
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in (summary["best_params"] or {}).items())
    return (f"<h2>Result</h2><div class='verdict ok'>best {esc(summary['metric'])} <b>{_fmt(summary['best_value'])}</b> "
            f"in trial {summary['best_trial']} ({esc(params)}) · <code>best.yaml</code> reproduces it</div>")


def trial_table(summary: dict) -> str:
    keys = sorted({k for t in summary["trials"] for k in t["params"]})
    rows = []
    for t in summary["trials"]:
        state = {"COMPLETE": "<span class='ok'>complete</span>", "PRUNED": f"pruned @ {t['pruned_at_step']}",
                 "FAIL": "<span class='bad'>failed</span>"}.get(t["state"], esc(t["state"].lower()))
        values = t["values"] or [None] * len(summary["metrics"])
        rows.append([t["number"], state, *(_fmt(v) for v in values), _fmt(t["steps"]), _fmt(t["seconds"]),
                     *(_fmt(t["params"].get(k)) for k in keys), esc((t["error"] or "")[:160])])
    counts = {}
    for t in summary["trials"]:
        counts[t["state"].lower()] = counts.get(t["state"].lower(), 0) + 1
    head = " · ".join(f"{n} {k}" for k, n in counts.items())
    return (f"<h2>Trials</h2><p>{esc(head)} · {summary['total_steps']} training steps in all</p>"
            + table(["trial", "state", *summary["metrics"], "steps", "seconds", *keys, "error"], rows))


def history_plot(summary: dict) -> str:
    plt = pyplot()
    done = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    if not done:
        return ""
    figs = []
    for i, (metric, direction) in enumerate(zip(summary["metrics"], summary["directions"])):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        xs, ys = [t["number"] for t in done], [t["values"][i] for t in done]
        ax.scatter(xs, ys, s=18, label="trial")
        best, run = [], None
        for y in ys:
            run = y if run is None else (max(run, y) if direction == "maximize" else min(run, y))
            best.append(run)
        ax.step(xs, best, where="post", color="C3", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        ax.legend(loc="best", fontsize=8)
        figs.append(fig_tag(fig, f"optimisation history of {metric}"))
    return "<h2>Optimisation history</h2>" + "".join(figs)


def curves_plot(summary: dict) -> str:
    curves = [t for t in summary["trials"] if t["intermediate"]]
    if not curves:
        return ""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for t in curves:
        steps = list(t["intermediate"])
        style = {"COMPLETE": "-", "PRUNED": ":"}.get(t["state"], "--")
        ax.plot(steps, [t["intermediate"][k] for k in steps], style, lw=1, label=f"{t['number']} {t['state'].lower()}")
    ax.set_xlabel("training step")
    ax.set_ylabel("reported validation score")
    if len(curves) <= 12:
        ax.legend(fontsize=7, ncol=2)
    return ("<h2>Intermediate values</h2><p>What each trial reported to the pruner at its evaluations; "
            "dotted: pruned there.</p>" + fig_tag(fig, "intermediate values"))


def importance_section(study, summary: dict, seed: int) -> str:
    import optuna

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 3:
        return "<h2>Parameter importance</h2><p class='muted'>fANOVA needs at least 3 complete trials.</p>"
    parts = []
    for i, metric in enumerate(summary["metrics"]):
        try:
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed),
                target=(lambda t, i=i: t.values[i]) if len(summary["metrics"]) > 1 else None)
        except (ValueError, RuntimeError) as e:  # e.g. every trial had the same value
            parts.append(f"<p class='muted'>{esc(metric)}: no importances ({esc(e)})</p>")
            continue
        rows = [[k, f"{v:.3f}"] for k, v in imp.items()]
        parts.append(f"<h3>{esc(metric)}</h3>" + table(["parameter", "importance (fANOVA)"], rows))
    return ("<h2>Parameter importance</h2><p>Share of the metric's variance each parameter explains (fANOVA on a random "
            "forest fitted to the complete trials; conditional parameters, absent from some trials, are left out).</p>"
            + "".join(parts))


def front_plot(summary: dict) -> str:
    if len(summary["metrics"]) != 2 or not summary.get("pareto"):
        return ""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    done = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    ax.scatter([t["values"][0] for t in done], [t["values"][1] for t in done], s=16, color="0.6", label="trial")
    front = sorted(summary["pareto"], key=lambda t: t["values"][0])
    ax.plot([t["values"][0] for t in front], [t["values"][1] for t in front], "o-", color="C3", label="Pareto front")
    ax.set_xlabel(f"{summary['metrics'][0]} ({summary['directions'][0]})")
    ax.set_ylabel(f"{summary['metrics'][1]} ({summary['directions'][1]})")
    ax.legend(fontsize=8)
    return "<h2>Front</h2>" + fig_tag(fig, "Pareto front")


def write_tune_report(out: Path, s, study, summary: dict) -> Path:
    parts = [result_section(summary), trial_table(summary), history_plot(summary), front_plot(summary),
             curves_plot(summary), importance_section(study, summary, s.base.seed)]
    title = esc(f"{s.base.name}-tune")
    head = (f"<p class='muted'>study <code>{esc(s.study_name)}</code> in <code>{esc(s.storage_url)}</code> · sampler "
            f"{esc(summary['sampler'])} · pruner {esc(summary['pruner'])}</p>")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>trainforge · {title}</title>"
            f"<style>{CSS}</style></head><body><h1>trainforge · {title}</h1>{head}{''.join(parts)}</body></html>")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
