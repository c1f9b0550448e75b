"""Evaluating a sequence classifier (tasks/classification.py's `evaluate`): the model and the TF-IDF + LR
baseline on the same held-out split, then why it fails.

Writes, under eval/:
    metrics.json            {"split", "n", "labels", "model": {accuracy, macro_f1, micro_f1, macro_precision,
                             macro_recall, auc_roc, ece}, "baseline": {"name", same keys},
                             "model_beats_baseline", "per_class": {"model"|"baseline": {label: {p, r, f1, support}}},
                             "compared": [{metric, model, baseline, better}], "plots_font",
                             "paired": McNemar p and bootstrap CI of the accuracy difference (evaluate/paired.py)}
    predictions.jsonl       per example: id, label, pred, probabilities, baseline_pred
    confusion_matrix.{json,png}   the matrix and the most-confused pairs with examples
    analysis.json           slices, most confident errors, calibration bins, attention index
    curves.json             ROC and precision-recall curves of the model and the baseline (evaluate/curves.py)
    errors.jsonl            every wrong prediction, most confident first
    reliability.png  slices.png  attention/*.png
    adversarial.json        the attack and the perturbation suites
"""

from __future__ import annotations

import json
import time

import numpy as np

from trainforge.console import console
from trainforge.data.io import write_jsonl
from trainforge.errors import UserError
from trainforge.evaluate.config import EvalConfig

# lower is better for these; every other metric: higher is better
LOWER_IS_BETTER = {"ece"}


def _one_thread_for_small(model, device) -> None:
    """Small models scored a few sequences at a time (the attack) spend more on OpenMP hand-offs than on
    the matmuls: one thread measured 4-5x less CPU than two for the 1.5M-parameter quickstart model.
    On a GPU the matmuls are not the CPU's: its threads are left alone."""
    import torch

    if device.type == "cpu" and model.num_parameters() < 50_000_000:
        torch.set_num_threads(1)


def evaluate_classifier(job) -> dict:
    """job: a tasks.EvalJob. Returns the flat metrics the runner logs (model_*, baseline_*, robustness)."""
    import torch

    from trainforge.device import describe
    from trainforge.models.load import load_classifier
    from trainforge.models.tokenizer import load_tokenizer

    cfg: EvalConfig = job.cfg
    out, rows, train_rows, model_dir, split_file = job.out, job.rows, job.train_rows, job.model_dir, job.split_file
    device = job.device if job.device is not None else torch.device("cpu")
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir).to(device)
    _one_thread_for_small(model, device)
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    labels = [id2label[i] for i in sorted(id2label)]
    index = {lab: i for i, lab in enumerate(labels)}
    for n, r in enumerate(rows, 1):
        if r["label"] not in index:
            raise UserError(f"{split_file} line {n}: label {r['label']!r} is not one the model knows ({', '.join(labels)}); "
                            "retrain, or drop such records in the data stage")

    from trainforge.evaluate.adversarial import Classifier

    t0 = time.perf_counter()
    clf = Classifier(model, tokenizer, cfg.batch_size)
    probs = clf.probs([r["text"] for r in rows])
    y_true = np.array([index[r["label"]] for r in rows])
    y_pred = probs.argmax(1)
    base_probs = _baseline(cfg, train_rows, rows, labels, job.seed)
    base_pred = base_probs.argmax(1) if base_probs is not None else None
    metrics = _score(cfg, rows, labels, y_true, probs, base_probs)
    metrics["device"] = describe(device)
    if base_pred is not None:  # the verdict a reader can trust: a paired test on the same examples
        from trainforge.evaluate.paired import paired_comparison

        metrics["paired"] = paired_comparison(y_true, y_pred, base_pred, cfg.bootstrap_samples, job.seed)
        pc = metrics["paired"]
        console.print(f"          paired: {pc['only_model_right']} only-model vs {pc['only_baseline_right']} only-baseline right, "
                      f"McNemar p = {pc['mcnemar_p']:.3g}, accuracy difference 95% CI "
                      f"[{pc['ci95'][0]:+.4f}, {pc['ci95'][1]:+.4f}]")
    console.print(f"          predictions and baseline in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()

    analysis = _analyse(cfg, out, rows, labels, y_true, probs, base_probs, split_file)
    write_jsonl(out / "predictions.jsonl", (
        {"id": r["id"], "label": labels[y_true[i]], "pred": labels[y_pred[i]],
         "probabilities": {labels[j]: round(float(probs[i, j]), 5) for j in range(len(labels))},
         **({"baseline_pred": labels[base_pred[i]]} if base_pred is not None else {})}
        for i, r in enumerate(rows)
    ))

    if cfg.attention_examples or cfg.attention_ids:
        analysis["attention"] = _attention(cfg, out, model_dir, tokenizer, rows, labels, probs, job.seed, device)
    (out / "analysis.json").write_text(json.dumps(analysis, indent=1, ensure_ascii=False))
    console.print(f"          error analysis, plots and attention maps in {time.perf_counter() - t0:.1f}s")

    flat = {f"model_{k}": v for k, v in metrics["model"].items() if isinstance(v, (int, float))}
    flat.update({f"baseline_{k}": v for k, v in metrics.get("baseline", {}).items() if isinstance(v, float)})
    adv = cfg.adversarial
    if adv.samples or adv.perturbation_samples:
        t0 = time.perf_counter()
        robustness = _robustness(cfg, train_rows, rows, labels, y_true, y_pred, clf, model, tokenizer, job.seed)
        (out / "adversarial.json").write_text(json.dumps(robustness, indent=1, ensure_ascii=False))
        metrics["robustness"] = _robustness_summary(robustness)
        flat.update({k: v for k, v in metrics["robustness"].items() if isinstance(v, (int, float))})
        console.print(f"          robustness in {time.perf_counter() - t0:.1f}s")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    return flat


def _baseline(cfg: EvalConfig, train_rows, rows, labels, seed) -> np.ndarray | None:
    if cfg.baseline != "tfidf-lr":
        return None
    from trainforge.evaluate.baseline import tfidf_lr_probs

    return tfidf_lr_probs([r["text"] for r in train_rows], [r["label"] for r in train_rows], [r["text"] for r in rows], labels, seed)


def _score(cfg, rows, labels, y_true, probs, base_probs) -> dict:
    from trainforge.evaluate.fonts import setup_cjk_font
    from trainforge.evaluate.metrics import classification_report

    font = setup_cjk_font()
    metrics: dict = {"split": cfg.split, "n": len(rows), "labels": labels}
    metrics["model"], per_class = classification_report(y_true, probs, labels)
    metrics["per_class"] = {"model": per_class}
    if base_probs is not None:
        summary, base_per_class = classification_report(y_true, base_probs, labels)
        metrics["baseline"] = {"name": "tfidf-lr", **summary}
        metrics["per_class"]["baseline"] = base_per_class
        metrics["model_beats_baseline"] = metrics["model"]["accuracy"] > metrics["baseline"]["accuracy"]
        metrics["compared"] = [
            {"metric": k, "model": v, "baseline": summary[k],
             "better": (v < summary[k]) if k in LOWER_IS_BETTER else (v > summary[k])}
            for k, v in metrics["model"].items() if v is not None and summary.get(k) is not None
        ]
        verdict = "beats" if metrics["model_beats_baseline"] else "LOSES TO"
        console.print(
            f"          model accuracy {metrics['model']['accuracy']:.4f} {verdict} the TF-IDF+LR baseline "
            f"{metrics['baseline']['accuracy']:.4f} on {len(rows):,} {cfg.split} examples"
        )
        lost = [c["metric"] for c in metrics["compared"] if not c["better"]]
        if lost:
            console.print(f"          the baseline is as good or better on: {', '.join(lost)}")
    metrics["plots_font"] = {"family": font.family, "source": font.source}
    return metrics


def _analyse(cfg, out, rows, labels, y_true, probs, base_probs, split_file) -> dict:
    from trainforge.evaluate import errors
    from trainforge.evaluate.metrics import calibration_bins, confusion_matrix
    from trainforge.evaluate.plots import plot_confusion, plot_reliability, plot_slices

    y_pred = probs.argmax(1)
    base_pred = base_probs.argmax(1) if base_probs is not None else None
    cm = confusion_matrix(y_true, y_pred, len(labels))
    confused = errors.most_confused_pairs(cm, labels, y_true, probs, rows)
    (out / "confusion_matrix.json").write_text(json.dumps(
        {"labels": labels, "matrix": cm.tolist(), "most_confused": confused}, indent=1, ensure_ascii=False))
    plot_confusion(cm.tolist(), labels, out / "confusion_matrix.png")

    values = errors.slice_values(rows, cfg.slice_fields, cfg.length_buckets, str(split_file))
    slices = errors.slice_metrics(values, y_true, y_pred, len(labels), base_pred)
    if slices:
        plot_slices(slices, out / "slices.png")
    wrong = errors.error_records(rows, labels, y_true, probs, base_pred, values)
    write_jsonl(out / "errors.jsonl", wrong)

    bins = {"model": calibration_bins(y_true, probs)}
    if base_probs is not None:
        bins["baseline"] = calibration_bins(y_true, base_probs)
    plot_reliability(bins, out / "reliability.png")
    from trainforge.evaluate.curves import roc_pr_curves

    (out / "curves.json").write_text(json.dumps(roc_pr_curves(y_true, probs, base_probs, labels)))
    return {"slices": slices, "most_confident_errors": wrong[: cfg.confident_errors], "calibration_bins": bins,
            "errors": len(wrong)}


def _attention(cfg, out, model_dir, tokenizer, rows, labels, probs, seed, device) -> list[dict]:
    from trainforge.evaluate.attention import draw_attention, load_eager_classifier, pick_examples

    missing = [i for i in cfg.attention_ids if i not in {r["id"] for r in rows}]
    if missing:
        raise UserError(f"eval.attention_ids: {', '.join(missing[:3])} not in the {cfg.split} split")
    eager = load_eager_classifier(model_dir).to(device)
    lengths = [len(ids) for ids in tokenizer([r["text"] for r in rows], truncation=True, max_length=512)["input_ids"]]
    chosen = pick_examples(rows, lengths, cfg.attention_ids, cfg.attention_examples, cfg.attention_max_tokens, seed)
    return draw_attention(eager, tokenizer, rows, labels, probs, chosen, cfg.attention_max_tokens, out / "attention")


def _robustness(cfg, train_rows, rows, labels, y_true, y_pred, clf, model, tokenizer, seed) -> dict:
    import random

    from trainforge.evaluate.adversarial import run_attack
    from trainforge.evaluate.fonts import setup_cjk_font
    from trainforge.evaluate.perturb import run_suites
    from trainforge.evaluate.substitutes import SubstitutionSource

    adv = cfg.adversarial
    corpus = [r["text"] for r in random.Random(seed).sample(train_rows, min(3000, len(train_rows)))]
    source = SubstitutionSource(corpus, model, tokenizer, setup_cjk_font().path, adv.min_word_similarity,
                                thesaurus_path=adv.thesaurus)
    out: dict = {"split": cfg.split}
    if adv.samples:  # the headline: meaning-preserving substitutions only
        out["attack"] = run_attack(rows, y_true, y_pred, labels, clf, source, adv, seed, kinds=adv.sources)
        if adv.unconstrained:  # the model's own embedding neighbours too: a separate, labelled figure
            from trainforge.evaluate.substitutes import ALL_SOURCES

            out["attack_unconstrained"] = run_attack(rows, y_true, y_pred, labels, clf, source, adv, seed,
                                                     kinds=ALL_SOURCES, name="unconstrained attack")
    if adv.perturbation_samples:
        out["perturbations"] = run_suites(rows, y_true, y_pred, labels, clf.probs, source.homophones, adv.perturbation_samples, seed)
    return out


def _robustness_summary(robustness: dict) -> dict:
    """The headline numbers that go into metrics.json (and MLflow)."""
    s: dict = {}
    if "attack" in robustness:
        a = robustness["attack"]
        s.update(attack_success_rate=a["attack_success_rate"], accuracy_under_attack=a["accuracy_under_attack"])
        if a["mean_perturbed_fraction"] is not None:
            s["attack_mean_perturbed_fraction"] = a["mean_perturbed_fraction"]
    if "attack_unconstrained" in robustness:  # embedding swaps can change the meaning: never the headline
        s["unconstrained_attack_success_rate"] = robustness["attack_unconstrained"]["attack_success_rate"]
    for name, p in robustness.get("perturbations", {}).items():
        s[f"{name}_accuracy"] = p["accuracy_perturbed"]
        s[f"{name}_flip_rate"] = p["flip_rate"]
    return s
