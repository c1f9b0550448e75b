"""The report's evaluation section: metrics beside the baseline, where the model fails, robustness."""

from __future__ import annotations

from pathlib import Path

from trainforge.report.html import clip, esc, fig_tag, img_tag, pyplot, read_json, table


def _f(v, fmt: str = ".4f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "—"


def evaluation(run_dir: Path) -> str | None:
    ev = run_dir / "eval"
    m = read_json(ev / "metrics.json")
    if not m:
        return None
    parts = [f"<h2>Evaluation ({esc(m['split'])} split, n = {m['n']:,})</h2>", _verdict(m), _metric_table(m)]
    per_class = m.get("per_class", {}).get("model")
    if per_class:
        base = m.get("per_class", {}).get("baseline", {})
        parts.append("<h3>Per class</h3>" + table(
            ["label", "support", "precision", "recall", "F1", "baseline F1"],
            [[lab, c["support"], _f(c["precision"]), _f(c["recall"]), _f(c["f1"]), _f(base.get(lab, {}).get("f1"))]
             for lab, c in per_class.items()]))
    parts.append("<div class='plots'>" + img_tag(ev / "confusion_matrix.png", "confusion matrix")
                 + img_tag(ev / "reliability.png", "reliability diagram") + "</div>")
    parts.append(_roc_pr(read_json(ev / "curves.json")))
    parts.append(img_tag(ev / "samples.png", "sample inputs with predictions"))  # image tasks (vision/evaluate.py)
    parts.append(_confused(read_json(ev / "confusion_matrix.json") or {}))
    analysis = read_json(ev / "analysis.json") or {}
    parts.append(_slices(analysis.get("slices", []), ev))
    parts.append(_confident_errors(analysis.get("most_confident_errors", []), analysis.get("errors")))
    parts.append(_attention(analysis.get("attention", []), ev / "attention", m.get("plots_font", {})))
    parts.append(_robustness(read_json(ev / "adversarial.json")))
    parts.append(_regression(read_json(ev / "regression.json")))
    parts.append(_harness(read_json(ev / "lm_eval.json")))
    return "".join(p for p in parts if p)


def _verdict(m: dict) -> str:
    base = m.get("baseline")
    if not base:
        return "<p class='muted'>No baseline was run (eval.baseline: none).</p>"
    wins = m.get("model_beats_baseline")
    lost = [c["metric"] for c in m.get("compared", []) if not c["better"]]
    extra = f" The baseline is as good or better on: {esc(', '.join(lost))}." if lost else ""
    key = m.get("headline", "accuracy")  # char_perplexity for language models
    paired = m.get("paired")
    test = ""
    if paired:
        lo, hi = paired["ci95"]
        test = (f" Paired on the same examples: {paired['only_model_right']:,} only the model gets right, "
                f"{paired['only_baseline_right']:,} only the baseline; McNemar exact p = {paired['mcnemar_p']:.3g} "
                f"({'significant' if paired['significant'] else 'not significant'} at {paired['alpha']}); accuracy "
                f"difference {paired['accuracy_difference']:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}] (paired bootstrap).")
        if not paired["significant"]:
            wins = None
    cls = "ok" if wins else "warn" if wins is None else "bad"
    verb = "beats" if wins else "is not significantly different from" if wins is None else "<b>loses to</b>"
    return (
        f"<div class='verdict {cls}'>The model {verb} the "
        f"{esc(base.get('name', 'baseline'))} baseline on {esc(key)}: {m['model'][key]:.4f} vs "
        f"{base[key]:.4f} on {m['n']:,} {esc(m['split'])} examples.{test}{extra}</div>"
    )


def _roc_pr(curves: dict | None) -> str:
    """ROC and precision-recall of the model beside the baseline's, from eval/curves.json."""
    if not curves or "model" not in curves:
        return ""
    plt = pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(8.4, 3.6))
    styles = {"model": dict(color="#4e79a7", lw=1.8), "baseline": dict(color="#9c755f", lw=1.4, ls="--")}
    for who in ("model", "baseline"):
        c = curves.get(who)
        if not c:
            continue
        roc.plot(c["roc"]["fpr"], c["roc"]["tpr"], label=f"{who} (AUC {c['roc']['auc']:.3f})", **styles[who])
        pr.plot(c["pr"]["recall"], c["pr"]["precision"], label=f"{who} (AP {c['pr']['average_precision']:.3f})", **styles[who])
    roc.plot([0, 1], [0, 1], ls=":", color="#aaa", lw=1)
    prevalence = curves["model"]["pr"].get("prevalence")
    if prevalence is not None:
        pr.axhline(prevalence, ls=":", color="#aaa", lw=1)
    for ax, (x, y, title) in ((roc, ("false positive rate", "true positive rate", "ROC")),
                              (pr, ("recall", "precision", "precision–recall"))):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, frameon=False)
    fig.tight_layout()
    return (f"<h3>ROC and precision–recall</h3><p class='muted'>{esc(curves.get('of', ''))}; dotted: chance "
            f"(ROC) and the positive share (PR).</p>" + fig_tag(fig, "ROC and precision-recall curves, model and baseline"))


def _metric_table(m: dict) -> str:
    base = m.get("baseline") or {}
    rows = []
    for k, v in m["model"].items():
        if not isinstance(v, (int, float)):
            continue
        b = base.get(k)
        delta = f"{v - b:+.4f}" if isinstance(b, (int, float)) else "—"
        rows.append([k + (" (lower is better)" if k == "ece" or "perplexity" in k else ""), _f(v), _f(b), delta])
    return table(["metric", "model", "baseline", "model − baseline"], rows)


def _confused(cm: dict) -> str:
    pairs = cm.get("most_confused") or []
    if not pairs:
        return ""
    items = "".join(
        f"<li><b>{esc(p['true'])} → {esc(p['predicted'])}</b>: {p['count']:,} ({p['share_of_true_class']:.1%} of {esc(p['true'])}) — "
        + " · ".join(f"{clip(e['text'], 70)} ({e['confidence']:.2f})" for e in p["examples"]) + "</li>"
        for p in pairs)
    return f"<h3>Most confused pairs</h3><ul>{items}</ul>"


def _slices(slices: list[dict], ev: Path) -> str:
    if not slices:
        return ""
    rows = [[f"{s['field']} = {s['value']}", s["n"], _f(s["model_accuracy"]), _f(s["model_macro_f1"]), _f(s.get("baseline_accuracy")),
             ("<span class='ok'>model</span>" if s.get("model_beats_baseline") else "<span class='bad'>baseline</span>")
             if "model_beats_baseline" in s else "—"] for s in slices]
    return "<h3>Metrics per slice</h3>" + table(["slice", "n", "accuracy", "macro F1", "baseline accuracy", "better"], rows) + img_tag(ev / "slices.png", "accuracy per slice")


def _confident_errors(errs: list[dict], total) -> str:
    if not errs:
        return ""
    rows = [[clip(e["id"], 24), e["label"], e["pred"], _f(e["confidence"], ".3f"), clip(e["text"], 90)] for e in errs[:10]]
    return (f"<h3>Most confident errors</h3><p class='muted'>{total:,} errors in all, every one in eval/errors.jsonl.</p>"
            + table(["id", "label", "predicted", "confidence", "text"], rows))


def _attention(drawn: list[dict], folder: Path, font: dict) -> str:
    if not drawn:
        return ""
    note = (f"Glyphs drawn with {esc(font.get('family'))} ({esc(font.get('source'))})." if font.get("family")
            else "<span class='bad'>No CJK font was found: Chinese tokens render as boxes (pip install pylopdf-fonts-zh-cn).</span>")
    body = "".join(
        f"<h4>{esc(d['id'])}: label {esc(d['label'])}, predicted {esc(d['pred'])}</h4><p>{clip(d['text'], 120)}<br>"
        f"rollout's top tokens: {esc(', '.join(f'{t} ({w:.2f})' for t, w in d['top_rollout_tokens']))}</p>"
        "<div class='plots'>" + img_tag(folder / d["rollout_png"], "attention rollout and last layer", natural=True)
        + (f"<details><summary>the last layer head by head</summary>{img_tag(folder / d['heads_png'], 'last layer per head', natural=True)}</details>"
           if d.get("heads_png") else "") + "</div>"
        for d in drawn)
    return (f"<h3>Attention</h3><p class='muted'>What the token the classifier reads attends to: rollout across all "
            f"layers (Abnar &amp; Zuidema, 2020) beside the last layer's heads averaged. {note}</p>{body}")


def _attack(a: dict, label: str) -> str:
    sources = ", ".join(a["candidate_sources"])
    out = (f"<p><b>{label}</b> — TextFooler-style attack on {a['attacked']} correctly classified of {a['sampled']} sampled "
           f"examples, substitutes from: {esc(sources)}. Success rate <b>{a['attack_success_rate']:.1%}</b>, "
           f"accuracy {a['accuracy_clean']:.3f} → <b>{a['accuracy_under_attack']:.3f}</b> under attack, "
           f"{_f(a['mean_perturbed_fraction'], '.1%')} of words changed on average in a success, "
           f"{a['mean_queries']:.0f} model queries per example.</p>")
    rows = [[clip(e["original"], 60), clip(e["perturbed"], 60),
             clip(", ".join(f"{s['from']}→{s['to']} ({s['kind']})" for s in e["substitutions"]), 60),
             f"{e['label']} → {e['pred_after']}"] for e in a["examples"][:6]]
    if rows:
        out += table(["original", "perturbed", "substitutions", "prediction"], rows)
    subs = [[clip(c["from"], 20), clip(c["to"], 20), c["kind"], "accepted", ""] for c in a.get("accepted", [])[:5]]
    subs += [[clip(c["from"], 20), clip(c["to"], 20), c["kind"], "rejected", c["reason"]] for c in a.get("rejected", [])[:5]]
    if subs:
        out += ("<p class='muted'>Substitutions the attack applied (accepted) and refused (rejected, with the constraint):</p>"
                + table(["word", "substitute", "source", "decision", "why refused"], subs))
    return out


def _robustness(adv: dict | None) -> str:
    if not adv:
        return ""
    out = "<h3>Robustness</h3>"
    a = adv.get("attack")
    if a:
        honest = a.get("meaning_preserving", "embedding" not in a["candidate_sources"])
        out += _attack(a, "Meaning-preserving attack" if honest else "<span class='bad'>Attack with meaning-changing sources</span>")
    u = adv.get("attack_unconstrained")
    if u:
        out += ("<p class='warn'>The unconstrained attack below also swaps in the model's own embedding neighbours, "
                "which can change the meaning (超值→不爽, 买→没买): its success rate is an upper bound, not a robustness "
                "measure.</p>" + _attack(u, "Unconstrained attack (embedding neighbours too)"))
    p = adv.get("perturbations")
    if p:
        out += table(["perturbation", "n", "texts changed", "accuracy clean", "accuracy perturbed", "flip rate"],
                     [[k, v["n"], v["changed"], _f(v["accuracy_clean"]), _f(v["accuracy_perturbed"]), _f(v["flip_rate"], ".1%")]
                      for k, v in p.items()])
    return out


def _regression(d: dict | None) -> str:
    if not d:
        return ""
    rows = [[k, _f(m["this"]), _f(m["other"]), f"{m['delta']:+.4f}", f"[{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}]",
             "<span class='bad'>yes</span>" if m["significant"] and m["delta"] < 0 else ("yes" if m["significant"] else "no")]
            for k, m in d["metrics"].items()]
    return (f"<h3>Regression diff against {esc(d['other'])}</h3>"
            + table(["metric", "this run", "other run", "delta", "95% CI (paired bootstrap)", "significant"], rows)
            + f"<p>{d['fixed']:,} examples fixed, {d['broken']:,} broken, of {d['n_shared']:,} shared.</p>")


def _harness(d: dict | None) -> str:
    if not d:
        return ""
    rows = [[task, k, _f(v)] for task, metrics in d["tasks"].items() for k, v in metrics.items()]
    return (f"<h3>lm-evaluation-harness {esc(d.get('lm_eval_version', ''))}</h3><p class='muted'>tasks from {esc(d['task_dir'])}"
            f"{', at most ' + str(d['limit']) + ' documents each' if d.get('limit') else ''}</p>" + table(["task", "metric", "value"], rows))
