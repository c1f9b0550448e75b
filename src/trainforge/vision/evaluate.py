"""Evaluating an image classifier (tasks/image_classification.py's `evaluate`): the model and logistic
regression on raw pixels, on the same held-out split, with McNemar's paired test between them.

Writes, under eval/ (the same metrics.json contract as the text classifier, so the report reads both):
    metrics.json            {"split", "n", "labels", "model": {accuracy, macro_f1, …}, "baseline": {"name": "pixel-lr", …},
                             "model_beats_baseline", "paired" (McNemar p, bootstrap CI: evaluate/paired.py), "compared", "per_class"}
    predictions.jsonl       per example: id, label, pred, probabilities, baseline_pred
    confusion_matrix.json   the matrix, the most-confused pairs, and up to 3 example ids per cell
    confusion_matrix.png    the matrix with a sample image in each non-empty cell (its most confident example)
    samples.png             test images with their label and the model's prediction (wrong ones in red)
    attention/NN_rollout.png  ViT: attention rollout from [CLS] over the patches, laid over the image
    analysis.json           most confident errors, attention index
"""

from __future__ import annotations

import json
import random

import numpy as np

from trainforge.console import console
from trainforge.data.io import write_jsonl
from trainforge.errors import UserError

PIXEL_LR_SIDE = 16
"""The baseline reads greyscale pixels at 16 × 16 (256 features): enough for digits, seconds to fit."""


def pixel_features(images: list, side: int = PIXEL_LR_SIDE) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(im.convert("L").resize((side, side), Image.Resampling.BILINEAR), np.float32).ravel() / 255.0
                     for im in images])


def pixel_lr_probs(train_images: list, train_labels: list[int], test_images: list, k: int, seed: int) -> np.ndarray:
    """(N, k) probabilities of logistic regression on pixels; a label the baseline never saw gets 0."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    clf.fit(pixel_features(train_images), train_labels)
    out = np.zeros((len(test_images), k))
    out[:, clf.classes_] = clf.predict_proba(pixel_features(test_images))
    return out


def evaluate_image_classifier(task, job) -> dict:
    import torch

    from trainforge.device import describe
    from trainforge.evaluate.classifier import LOWER_IS_BETTER
    from trainforge.evaluate.errors import most_confused_pairs
    from trainforge.evaluate.metrics import classification_report, confusion_matrix
    from trainforge.evaluate.paired import paired_comparison
    from trainforge.vision.images import load_rgb

    cfg, out, rows = job.cfg, job.out, job.rows
    device = job.device if job.device is not None else torch.device("cpu")
    processor = task.load_processor(job.model_dir)
    model = task.load_model(job.model_dir).to(device)
    labels = task.labels
    index = {lab: i for i, lab in enumerate(labels)}
    for n, r in enumerate(rows, 1):
        if r.get("label") not in index:
            raise UserError(f"{job.split_file} line {n}: label {r.get('label')!r} is not one the model knows ({', '.join(labels)})")
    enc = task.encode(rows, processor, held_out=True)
    probs = torch.softmax(task.logits(model, enc, cfg.batch_size), -1).numpy()
    y_true = np.array(enc.labels)
    y_pred = probs.argmax(1)

    metrics: dict = {"split": cfg.split, "n": len(rows), "labels": labels, "headline": "accuracy"}
    metrics["model"], per_class = classification_report(y_true, probs, labels)
    metrics["per_class"] = {"model": per_class}
    base_pred = None
    if cfg.baseline != "none":
        train_rows = [r for r in job.train_rows if r.get("label") in index]
        base_probs = pixel_lr_probs(load_rgb(train_rows, 32, "data/train.jsonl"), [index[r["label"]] for r in train_rows],
                                    enc.images, len(labels), job.seed)
        base_pred = base_probs.argmax(1)
        summary, base_per_class = classification_report(y_true, base_probs, labels)
        metrics["baseline"] = {"name": "pixel-lr", **summary}
        metrics["per_class"]["baseline"] = base_per_class
        metrics["model_beats_baseline"] = metrics["model"]["accuracy"] > summary["accuracy"]
        metrics["paired"] = paired_comparison(y_true, y_pred, base_pred, cfg.bootstrap_samples, job.seed)
        metrics["compared"] = [
            {"metric": k, "model": v, "baseline": summary[k], "better": (v < summary[k]) if k in LOWER_IS_BETTER else (v > summary[k])}
            for k, v in metrics["model"].items() if v is not None and summary.get(k) is not None]
        verdict = "beats" if metrics["model_beats_baseline"] else "LOSES TO"
        console.print(f"          model accuracy {metrics['model']['accuracy']:.4f} {verdict} logistic regression on pixels "
                      f"{summary['accuracy']:.4f} on {len(rows):,} {cfg.split} images "
                      f"(McNemar p = {metrics['paired']['mcnemar_p']:.3g})")
    metrics["device"] = describe(device)

    cm = confusion_matrix(y_true, y_pred, len(labels))
    named = [{**r, "text": f"image {r['id']}"} for r in rows]  # the text classifier's helpers show a text per example
    cells = cell_examples(y_true, y_pred, probs, len(labels))
    (out / "confusion_matrix.json").write_text(json.dumps(
        {"labels": labels, "matrix": cm.tolist(), "most_confused": most_confused_pairs(cm, labels, y_true, probs, named),
         "cell_examples": {f"{labels[t]}->{labels[p]}": [rows[i]["id"] for i in ids] for (t, p), ids in cells.items()}},
        indent=1, ensure_ascii=False))
    plot_confusion_with_images(cm, labels, cells, enc.images, out / "confusion_matrix.png")
    plot_samples(enc.images, labels, y_true, y_pred, probs, out / "samples.png", job.seed)
    write_jsonl(out / "predictions.jsonl", (
        {"id": r["id"], "label": labels[y_true[i]], "pred": labels[y_pred[i]],
         "probabilities": {labels[j]: round(float(probs[i, j]), 5) for j in range(len(labels))},
         **({"baseline_pred": labels[base_pred[i]]} if base_pred is not None else {})}
        for i, r in enumerate(rows)))
    wrong = sorted((i for i in range(len(rows)) if y_pred[i] != y_true[i]), key=lambda i: -probs[i].max())
    errors = [{"id": rows[i]["id"], "label": labels[y_true[i]], "pred": labels[y_pred[i]],
               "confidence": round(float(probs[i].max()), 5), "text": f"image {rows[i]['id']}"} for i in wrong]
    analysis: dict = {"most_confident_errors": errors[: cfg.confident_errors], "errors": len(errors)}
    if cfg.attention_examples and getattr(model.config, "model_type", "") == "vit":
        analysis["attention"] = draw_patch_rollout(job.model_dir, task, enc, rows, labels, probs, cfg.attention_examples,
                                                   job.seed, out / "attention", device)
    (out / "analysis.json").write_text(json.dumps(analysis, indent=1, ensure_ascii=False))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    flat = {f"model_{k}": v for k, v in metrics["model"].items() if isinstance(v, (int, float))}
    flat.update({f"baseline_{k}": v for k, v in metrics.get("baseline", {}).items() if isinstance(v, float)})
    return flat


def cell_examples(y_true, y_pred, probs, k: int, per_cell: int = 3) -> dict[tuple[int, int], list[int]]:
    """(true, predicted) → up to `per_cell` example indices, most confident first."""
    cells: dict[tuple[int, int], list[int]] = {}
    for i in np.argsort(-probs.max(1)):
        key = (int(y_true[i]), int(y_pred[i]))
        if len(cells.setdefault(key, [])) < per_cell:
            cells[key].append(int(i))
    return cells


def plot_confusion_with_images(cm: np.ndarray, labels: list[str], cells: dict, images: list, path) -> None:
    from trainforge.evaluate.plots import _plt, _save

    plt = _plt()
    k = len(labels)
    fig, axes = plt.subplots(k, k, figsize=(0.9 * k + 1.2, 0.9 * k + 1.2), squeeze=False)
    top = max(1, int(cm.max()))
    for t in range(k):
        for p in range(k):
            ax = axes[t][p]
            ax.set_xticks([])
            ax.set_yticks([])
            ids = cells.get((t, p))
            if ids:
                ax.imshow(np.asarray(images[ids[0]]), alpha=0.9)
            ax.set_facecolor((0.2, 0.4, 0.8, 0.15 + 0.6 * cm[t, p] / top) if cm[t, p] else "white")
            for side in ax.spines.values():
                side.set_color("#2b6" if t == p else ("#d33" if cm[t, p] else "#ccc"))
            if cm[t, p]:
                ax.text(0.02, 0.02, str(int(cm[t, p])), transform=ax.transAxes, fontsize=7, color="black",
                        bbox=dict(facecolor="white", alpha=0.7, pad=1, linewidth=0))
            if p == 0:
                ax.set_ylabel(labels[t], fontsize=8)
            if t == k - 1:
                ax.set_xlabel(labels[p], fontsize=8)
    fig.supylabel("true label", fontsize=9)
    fig.supxlabel("predicted label (sample: the most confident example in the cell)", fontsize=9)
    _save(fig, path, dpi=90)


def plot_samples(images: list, labels: list[str], y_true, y_pred, probs, path, seed: int, n: int = 16) -> None:
    from trainforge.evaluate.plots import _plt, _save

    plt = _plt()
    wrong = [i for i in range(len(images)) if y_true[i] != y_pred[i]]
    right = [i for i in range(len(images)) if y_true[i] == y_pred[i]]
    rng = random.Random(seed)
    chosen = rng.sample(wrong, min(len(wrong), n // 4)) + rng.sample(right, min(len(right), n - min(len(wrong), n // 4)))
    cols = 8
    fig, axes = plt.subplots((len(chosen) + cols - 1) // cols or 1, cols, figsize=(cols * 1.2, 1.5 * ((len(chosen) + cols - 1) // cols or 1)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), chosen):
        ax.imshow(np.asarray(images[i]))
        ok = y_true[i] == y_pred[i]
        ax.set_title(f"{labels[y_true[i]]}→{labels[y_pred[i]]} {probs[i].max():.2f}", fontsize=7, color="black" if ok else "red")
    fig.suptitle("sample test images: label→prediction (confidence); wrong in red", fontsize=9)
    _save(fig, path, dpi=90)


def patch_rollout(model, pixels) -> np.ndarray:
    """(grid, grid) rollout weight of each patch as seen from [CLS], for one image (1, 3, H, W)."""
    import torch

    from trainforge.evaluate.attention import attention_rollout

    with torch.no_grad():
        out = model(pixel_values=pixels, output_attentions=True)
    attn = torch.stack([a[0].float() for a in out.attentions]).cpu().numpy()  # L, H, T, T (T = 1 + patches)
    rollout = attention_rollout(attn)[0, 1:]
    grid = int(round(np.sqrt(rollout.shape[0])))
    return rollout.reshape(grid, grid)


def draw_patch_rollout(model_dir, task, enc, rows, labels, probs, n: int, seed: int, folder, device) -> list[dict]:
    from PIL import Image

    from trainforge.evaluate.plots import _plt, _save

    eager = task.load_model(model_dir, attn_implementation="eager").to(device)
    folder.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    drawn = []
    for m, i in enumerate(random.Random(seed).sample(range(len(rows)), min(n, len(rows)))):
        grid = patch_rollout(eager, enc.pixels[i:i + 1].to(device))
        image = np.asarray(enc.images[i])
        heat = np.asarray(Image.fromarray((grid / grid.max() * 255).astype(np.uint8)).resize(image.shape[1::-1],
                                                                                             Image.Resampling.NEAREST))
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(4, 2.2))
        a0.imshow(image)
        a0.set_title("input", fontsize=8)
        a1.imshow(image)
        a1.imshow(heat, cmap="magma", alpha=0.6)
        a1.set_title("rollout from [CLS]", fontsize=8)
        for a in (a0, a1):
            a.axis("off")
        pred = labels[int(probs[i].argmax())]
        fig.suptitle(f"{rows[i]['id']} · label {rows[i]['label']} · predicted {pred} ({probs[i].max():.2f})", fontsize=8)
        png = folder / f"{m:02d}_rollout.png"
        _save(fig, png, dpi=90)
        flat = grid.ravel()
        top = np.argsort(-flat)[:5]
        g = grid.shape[0]
        drawn.append({"id": rows[i]["id"], "text": f"image {rows[i]['id']}", "label": rows[i]["label"], "pred": pred,
                      "top_rollout_tokens": [[f"patch r{j // g} c{j % g}", round(float(flat[j]), 4)] for j in top],
                      "rollout_png": png.name, "heads_png": "none.png"})
    return drawn
