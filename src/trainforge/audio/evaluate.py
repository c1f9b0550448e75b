"""Evaluating an audio classifier (tasks/audio_classification.py's `evaluate`) beside two baselines on the same
held-out split, each with McNemar's paired test (evaluate/paired.py):

    majority   always the most frequent training label (what a model that learned nothing scores)
    mfcc-lr    logistic regression on MFCC statistics: 20 MFCCs per frame from the same log-mels the model reads
               (scipy.fft.dct over the mel axis, audio/features.py), their mean, std and per-third means over time

Writes, under eval/ (the text and image classifiers' metrics.json contract, so the report reads it):
    metrics.json           model, baseline (mfcc-lr), baselines {majority, mfcc-lr}, paired / paired_majority, per_class
    predictions.jsonl      per example: id, label, pred, probabilities, baseline_pred
    confusion_matrix.json  the matrix and the most-confused pairs;  confusion_matrix.png
    samples.png            log-mel spectrogram thumbnails of test clips with label → prediction (wrong ones in red)
"""

from __future__ import annotations

import json
import random

import numpy as np

from trainforge.console import console
from trainforge.data.io import write_jsonl
from trainforge.errors import UserError


def majority_probs(train_labels: list[int], n: int, k: int) -> np.ndarray:
    """(n, k): all mass on the most frequent training label (ties: the lowest index)."""
    out = np.zeros((n, k))
    out[:, int(np.bincount(np.asarray(train_labels), minlength=k).argmax())] = 1.0
    return out


def mfcc_lr_probs(train_features: np.ndarray, train_labels: list[int], test_features: np.ndarray, k: int,
                  seed: int) -> np.ndarray:
    """(N, k) probabilities of standardised logistic regression on MFCC statistics; unseen labels get 0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from trainforge.audio.features import mfcc_summary

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000, random_state=seed))
    clf.fit(mfcc_summary(train_features), train_labels)
    out = np.zeros((len(test_features), k))
    out[:, clf[-1].classes_] = clf.predict_proba(mfcc_summary(test_features))
    return out


def evaluate_audio_classifier(task, job) -> dict:
    import torch

    from trainforge.audio.features import log_mels
    from trainforge.audio.waves import load_waves
    from trainforge.device import describe
    from trainforge.evaluate.errors import most_confused_pairs
    from trainforge.evaluate.metrics import classification_report, confusion_matrix
    from trainforge.evaluate.paired import paired_comparison
    from trainforge.evaluate.plots import plot_confusion

    cfg, out, rows = job.cfg, job.out, job.rows
    device = job.device if job.device is not None else torch.device("cpu")
    extractor = task.load_processor(job.model_dir)
    model = task.load_model(job.model_dir).to(device)
    labels = task.labels
    index = {lab: i for i, lab in enumerate(labels)}
    for n, r in enumerate(rows, 1):
        if r.get("label") not in index:
            raise UserError(f"{job.split_file} line {n}: label {r.get('label')!r} is not one the model knows ({', '.join(labels)})")
    enc = task.encode(rows, extractor, held_out=True)
    probs = torch.softmax(task.logits(model, enc, cfg.batch_size), -1).numpy()
    y_true, y_pred = np.array(enc.labels), probs.argmax(1)

    metrics: dict = {"split": cfg.split, "n": len(rows), "labels": labels, "headline": "accuracy"}
    metrics["model"], per_class = classification_report(y_true, probs, labels)
    metrics["per_class"] = {"model": per_class}
    base_pred = None
    if cfg.baseline != "none":
        train_rows = [r for r in job.train_rows if r.get("label") in index]
        y_train = [index[r["label"]] for r in train_rows]
        train_feats = log_mels(extractor, load_waves(train_rows, extractor.sampling_rate, "data/train.jsonl")).numpy()
        runs = {"majority": majority_probs(y_train, len(rows), len(labels)),
                "mfcc-lr": mfcc_lr_probs(train_feats, y_train, enc.features.numpy(), len(labels), job.seed)}
        metrics["baselines"] = {}
        for name, base_probs in runs.items():
            summary, base_per_class = classification_report(y_true, base_probs, labels)
            metrics["baselines"][name] = {"name": name, **summary,
                                          "paired": paired_comparison(y_true, y_pred, base_probs.argmax(1),
                                                                      cfg.bootstrap_samples, job.seed)}
        base_pred = runs["mfcc-lr"].argmax(1)
        summary, base_per_class = classification_report(y_true, runs["mfcc-lr"], labels)
        metrics["baseline"] = {"name": "mfcc-lr", **summary}
        metrics["per_class"]["baseline"] = base_per_class
        metrics["paired"] = metrics["baselines"]["mfcc-lr"]["paired"]
        metrics["model_beats_baseline"] = metrics["model"]["accuracy"] > summary["accuracy"]
        metrics["compared"] = [{"metric": k, "model": v, "baseline": summary[k], "better": v > summary[k]}
                               for k, v in metrics["model"].items()
                               if k in ("accuracy", "macro_f1") and v is not None and summary.get(k) is not None]
        verdict = ("beats" if metrics["model_beats_baseline"] else
                   "ties" if metrics["model"]["accuracy"] == summary["accuracy"] else "LOSES TO")
        console.print(f"          model accuracy {metrics['model']['accuracy']:.4f} {verdict} MFCC + logistic regression "
                      f"{summary['accuracy']:.4f} (McNemar p = {metrics['paired']['mcnemar_p']:.3g}); majority class "
                      f"{metrics['baselines']['majority']['accuracy']:.4f}; {len(rows):,} {cfg.split} clips")
    metrics["device"] = describe(device)

    cm = confusion_matrix(y_true, y_pred, len(labels))
    named = [{**r, "text": f"clip {r['id']}"} for r in rows]
    (out / "confusion_matrix.json").write_text(json.dumps(
        {"labels": labels, "matrix": cm.tolist(), "most_confused": most_confused_pairs(cm, labels, y_true, probs, named)},
        indent=1, ensure_ascii=False))
    plot_confusion(cm.tolist(), labels, out / "confusion_matrix.png")
    plot_spectrograms(enc.features.numpy(), rows, labels, y_true, y_pred, probs, out / "samples.png", job.seed)
    write_jsonl(out / "predictions.jsonl", (
        {"id": r["id"], "label": labels[y_true[i]], "pred": labels[y_pred[i]],
         "probabilities": {labels[j]: round(float(probs[i, j]), 5) for j in range(len(labels))},
         **({"baseline_pred": labels[base_pred[i]]} if base_pred is not None else {})}
        for i, r in enumerate(rows)))
    wrong = sorted((i for i in range(len(rows)) if y_pred[i] != y_true[i]), key=lambda i: -probs[i].max())
    errors = [{"id": rows[i]["id"], "label": labels[y_true[i]], "pred": labels[y_pred[i]],
               "confidence": round(float(probs[i].max()), 5), "text": f"clip {rows[i]['id']} ({rows[i].get('audio')})"}
              for i in wrong]
    (out / "analysis.json").write_text(json.dumps({"most_confident_errors": errors[: cfg.confident_errors],
                                                   "errors": len(errors)}, indent=1, ensure_ascii=False))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    flat = {f"model_{k}": v for k, v in metrics["model"].items() if isinstance(v, (int, float))}
    flat.update({f"baseline_{k}": v for k, v in metrics.get("baseline", {}).items() if isinstance(v, float)})
    if "baselines" in metrics:
        flat["majority_accuracy"] = metrics["baselines"]["majority"]["accuracy"]
    return flat


def plot_spectrograms(features: np.ndarray, rows: list[dict], labels: list[str], y_true, y_pred, probs, path, seed: int,
                      n: int = 12) -> None:
    """A log-mel thumbnail per sampled test clip (time →, mel ↑), titled label→prediction; a quarter wrong ones."""
    from trainforge.evaluate.plots import _plt, _save

    plt = _plt()
    wrong = [i for i in range(len(rows)) if y_true[i] != y_pred[i]]
    right = [i for i in range(len(rows)) if y_true[i] == y_pred[i]]
    rng = random.Random(seed)
    k = min(len(wrong), n // 4)
    chosen = rng.sample(wrong, k) + rng.sample(right, min(len(right), n - k))
    cols = 6
    nrows = (len(chosen) + cols - 1) // cols or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(cols * 1.6, 1.5 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), chosen):
        ax.imshow(features[i].T, origin="lower", aspect="auto", cmap="magma")
        ok = y_true[i] == y_pred[i]
        ax.set_title(f"{labels[y_true[i]]}→{labels[y_pred[i]]} {probs[i].max():.2f}", fontsize=7,
                     color="black" if ok else "red")
    fig.suptitle("sample test clips (log-mel): label→prediction (confidence); wrong in red", fontsize=9)
    _save(fig, path, dpi=90)
