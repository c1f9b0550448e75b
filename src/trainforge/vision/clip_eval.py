"""Evaluating a CLIP model (tasks/clip.py's `evaluate`): retrieval both ways beside random ranking, and the CLIP score.

Writes, under eval/:
    metrics.json      {"split", "n", "headline": "i2t_recall_at_1", "model": {i2t_recall_at_{1,5,10},
                       t2i_recall_at_{1,5,10}, clip_score}, "baseline": {"name": "random-ranking", same recalls},
                       "model_beats_baseline", "compared", "positives"}
    retrieval.jsonl   per test image: its caption, the top 5 captions retrieved, and whether the top one matches
    samples.png       test images with the caption retrieved first (wrong ones in red)
"""

from __future__ import annotations

import json
import random

import numpy as np

from trainforge.console import console
from trainforge.data.io import write_jsonl


def evaluate_clip(task, job) -> dict:
    import torch

    from trainforge.device import describe
    from trainforge.vision.clip import PairProcessor
    from trainforge.vision.retrieval import normalise, retrieval_metrics, unique_captions

    cfg, out, rows = job.cfg, job.out, job.rows
    device = job.device if job.device is not None else torch.device("cpu")
    task.processor = PairProcessor.from_dir(job.model_dir, task.max_length)
    model = task.load_model(job.model_dir).to(device)
    index = {g: i for i, g in enumerate(task.groups)}
    enc = task.encode(rows, task.processor, held_out=True)
    img, txt = task.embeddings(model, enc, cfg.batch_size)
    groups = [index.get(r.get("label")) for r in rows] if task.groups else None
    texts = [r["text"] for r in rows]
    scores = retrieval_metrics(img, txt, groups, texts=texts)
    metrics: dict = {"split": cfg.split, "n": len(rows), "headline": "i2t_recall_at_1",
                     "positives": "same label" if groups and None not in groups else "own pair only",
                     "model": scores["model"], "baseline": {"name": "random-ranking", **scores["random"]}}
    base = metrics["baseline"]
    metrics["compared"] = [{"metric": k, "model": v, "baseline": base[k], "better": v > base[k]}
                           for k, v in metrics["model"].items() if k in base]
    metrics["model_beats_baseline"] = metrics["model"]["i2t_recall_at_1"] > base["i2t_recall_at_1"]
    metrics["device"] = describe(device)
    console.print(f"          image→text recall@1 {metrics['model']['i2t_recall_at_1']:.4f} vs random ranking "
                  f"{base['i2t_recall_at_1']:.4f}; text→image {metrics['model']['t2i_recall_at_1']:.4f} vs "
                  f"{base['t2i_recall_at_1']:.4f}; CLIP score {metrics['model']['clip_score']:.2f} on {len(rows):,} pairs")

    cols, pos = unique_captions(texts, groups)  # image→text ranks the distinct captions
    sim = (normalise(img) @ normalise(txt).T)[:, cols]
    top = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    shown = [[texts[cols[j]] for j in top[i]] for i in range(len(rows))]
    write_jsonl(out / "retrieval.jsonl", ({"id": r["id"], "caption": r["text"], "retrieved": shown[i],
                                           "top1_matches": bool(pos[i, top[i, 0]])} for i, r in enumerate(rows)))
    plot_retrieval_samples(enc.images, shown, [bool(pos[i, top[i, 0]]) for i in range(len(rows))], out / "samples.png",
                           job.seed)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    flat = {f"model_{k}": v for k, v in metrics["model"].items()}
    flat.update({f"baseline_{k}": v for k, v in base.items() if isinstance(v, float)})
    return flat


def plot_retrieval_samples(images, shown: list[list[str]], hit: list[bool], path, seed: int, n: int = 8) -> None:
    from trainforge.evaluate.fonts import setup_cjk_font
    from trainforge.evaluate.plots import _plt, _save

    setup_cjk_font()  # the captions are half Chinese
    plt = _plt()
    chosen = random.Random(seed).sample(range(len(images)), min(n, len(images)))
    fig, axes = plt.subplots(1, len(chosen), figsize=(1.9 * len(chosen), 2.4), squeeze=False)
    for ax, i in zip(axes[0], chosen):
        ax.imshow(np.asarray(images[i]))
        ax.axis("off")
        ax.set_title(f"→ {shown[i][0]}", fontsize=6, color="black" if hit[i] else "red", wrap=True)
    fig.suptitle("test images and the caption each retrieves first (wrong in red)", fontsize=9)
    _save(fig, path, dpi=90)
