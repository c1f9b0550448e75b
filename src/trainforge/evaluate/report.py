"""The report's evaluation section: metrics beside the baseline, where the model fails, robustness."""

from __future__ import annotations

from pathlib import Path

from trainforge.report.html import esc, img_tag, read_json, table


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
    parts.append(img_tag(ev / "confusion_matrix.png", "confusion matrix") + img_tag(ev / "reliability.png", "reliability diagram"))
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
    return (
        f"<div class='verdict {'ok' if wins else 'bad'}'>The model {'beats' if wins else '<b>loses to</b>'} the "
        f"{esc(base.get('name', 'baseline'))} baseline on {esc(key)}: {m['model'][key]:.4f} vs "
        f"{base[key]:.4f} on {m['n']:,} {esc(m['split'])} examples.{extra}</div>"
    )


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
        + " · ".join(f"<code>{esc(e['text'][:70])}</code> ({e['confidence']:.2f})" for e in p["examples"]) + "</li>"
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
    rows = [[e["id"], e["label"], e["pred"], _f(e["confidence"], ".3f"), esc(e["text"][:90])] for e in errs[:10]]
    return (f"<h3>Most confident errors</h3><p class='muted'>{total:,} errors in all, every one in eval/errors.jsonl.</p>"
            + table(["id", "label", "predicted", "confidence", "text"], rows))


def _attention(drawn: list[dict], folder: Path, font: dict) -> str:
    if not drawn:
        return ""
    note = (f"Glyphs drawn with {esc(font.get('family'))} ({esc(font.get('source'))})." if font.get("family")
            else "<span class='bad'>No CJK font was found: Chinese tokens render as boxes (pip install pylopdf-fonts-zh-cn).</span>")
    body = "".join(
        f"<h4>{esc(d['id'])}: label {esc(d['label'])}, predicted {esc(d['pred'])}</h4><p><code>{esc(d['text'][:120])}</code><br>"
        f"rollout's top tokens: {esc(', '.join(f'{t} ({w:.2f})' for t, w in d['top_rollout_tokens']))}</p>"
        + img_tag(folder / d["rollout_png"], "attention rollout") + img_tag(folder / d["heads_png"], "attention per layer and head")
        for d in drawn)
    return f"<h3>Attention</h3><p class='muted'>Per layer and head, and rollout across layers. {note}</p>{body}"


def _robustness(adv: dict | None) -> str:
    if not adv:
        return ""
    out = "<h3>Robustness</h3>"
    a = adv.get("attack")
    if a:
        out += (f"<p>TextFooler-style attack on {a['attacked']} correctly classified of {a['sampled']} sampled examples "
                f"(sources: {esc(', '.join(a['candidate_sources']))}): success rate <b>{a['attack_success_rate']:.1%}</b>, "
                f"accuracy {a['accuracy_clean']:.3f} → <b>{a['accuracy_under_attack']:.3f}</b> under attack, "
                f"{_f(a['mean_perturbed_fraction'], '.1%')} of words changed on average in a success, "
                f"{a['mean_queries']:.0f} model queries per example.</p>")
        rows = [[esc(e["original"][:80]), esc(e["perturbed"][:80]),
                 esc(", ".join(f"{s['from']}→{s['to']} ({s['kind']})" for s in e["substitutions"])),
                 f"{e['label']} → {e['pred_after']}"] for e in a["examples"][:8]]
        if rows:
            out += table(["original", "perturbed", "substitutions", "prediction"], rows)
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
    rows = [[task, esc(k), _f(v)] for task, metrics in d["tasks"].items() for k, v in metrics.items()]
    return (f"<h3>lm-evaluation-harness {esc(d.get('lm_eval_version', ''))}</h3><p class='muted'>tasks from {esc(d['task_dir'])}"
            f"{', at most ' + str(d['limit']) + ' documents each' if d.get('limit') else ''}</p>" + table(["task", "metric", "value"], rows))
