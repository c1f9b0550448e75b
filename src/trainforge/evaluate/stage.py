"""The eval stage: the model and the baseline scored on the same held-out split.

Writes eval/metrics.json (the contract other stages and tools read):
    {"split": "test", "n": …, "model": {"accuracy", "macro_f1", …}, "baseline": {…},
     "model_beats_baseline": bool, "labels": […]}
plus eval/predictions.jsonl and eval/confusion_matrix.{json,png}.
"""

from __future__ import annotations

import json

from trainforge.console import console
from trainforge.data.io import read_jsonl, write_jsonl
from trainforge.evaluate.config import EvalConfig


def run_eval(ctx) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainforge.evaluate.baseline import tfidf_lr_predict
    from trainforge.evaluate.metrics import classification_metrics
    from trainforge.evaluate.plots import plot_confusion
    from trainforge.train.loop import Encoded, predict_logits

    cfg: EvalConfig = ctx.section
    out = ctx.path("eval")
    out.mkdir(exist_ok=True)
    rows = read_jsonl(ctx.path("data", f"{cfg.split}.jsonl"))
    train_rows = read_jsonl(ctx.path("data", "train.jsonl"))
    model_dir = ctx.path("model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    id2label = {int(k): v for k, v in model.config.id2label.items()}

    texts, y_true = [r["text"] for r in rows], [r["label"] for r in rows]
    ids = tokenizer(texts, truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    logits = predict_logits(model, Encoded(ids, [0] * len(ids)), cfg.batch_size, tokenizer.pad_token_id)
    probs = torch.softmax(logits, -1)
    y_pred = [id2label[int(i)] for i in probs.argmax(-1)]

    metrics = {"split": cfg.split, "n": len(rows), "labels": [id2label[i] for i in sorted(id2label)]}
    metrics["model"] = classification_metrics(y_true, y_pred)
    if cfg.baseline == "tfidf-lr":
        base_pred = tfidf_lr_predict([r["text"] for r in train_rows], [r["label"] for r in train_rows], texts, ctx.config.seed)
        metrics["baseline"] = {"name": "tfidf-lr", **classification_metrics(y_true, base_pred)}
        metrics["model_beats_baseline"] = metrics["model"]["accuracy"] > metrics["baseline"]["accuracy"]
        verdict = "beats" if metrics["model_beats_baseline"] else "LOSES TO"
        console.print(
            f"          model accuracy {metrics['model']['accuracy']:.4f} {verdict} the TF-IDF+LR baseline "
            f"{metrics['baseline']['accuracy']:.4f} on {len(rows):,} {cfg.split} examples"
        )

    labels = metrics["labels"]
    matrix = [[sum(1 for t, p in zip(y_true, y_pred) if t == a and p == b) for b in labels] for a in labels]
    (out / "confusion_matrix.json").write_text(json.dumps({"labels": labels, "matrix": matrix}, indent=1))
    plot_confusion(matrix, labels, out / "confusion_matrix.png")
    write_jsonl(out / "predictions.jsonl", (
        {"id": r["id"], "label": t, "pred": p, "probabilities": {labels[j]: round(float(probs[i, j]), 5) for j in range(len(labels))}}
        for i, (r, t, p) in enumerate(zip(rows, y_true, y_pred))
    ))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    flat = {f"model_{k}": v for k, v in metrics["model"].items()}
    flat.update({f"baseline_{k}": v for k, v in metrics.get("baseline", {}).items() if isinstance(v, float)})
    return flat
