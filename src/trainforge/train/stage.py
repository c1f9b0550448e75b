"""The train stage: tokenizer → model → fit → save, all in Hugging Face format.

Reads data/train.jsonl and data/val.jsonl; writes
    tokenizer/                      the tokenizer (trained BPE, or the pretrained model's)
    model/                          config.json (with id2label), model.safetensors, tokenizer files,
                                    trainer_state.json (loss curve, evals, tokens/s)
"""

from __future__ import annotations

import json
import shutil

from trainforge.console import console
from trainforge.data.io import read_jsonl
from trainforge.errors import UserError
from trainforge.train.config import TrainConfig


def run_train(ctx) -> dict:
    import torch

    from trainforge.models.presets import build_classifier, resolve_model
    from trainforge.models.tokenizer import train_bpe
    from trainforge.train.loop import Encoded, fit

    cfg: TrainConfig = ctx.section
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_rows = read_jsonl(ctx.path("data", "train.jsonl"))
    val_rows = read_jsonl(ctx.path("data", "val.jsonl"))
    if not train_rows or not val_rows:
        raise UserError("train: data/train.jsonl and data/val.jsonl must both hold records; lower data.split.val or add data")
    missing = [r["id"] for r in train_rows[:1000] if "label" not in r]
    if missing:
        raise UserError(f"train.task=classification needs labels; record {missing[0]} has none (set data.sources[].label_field)")
    labels = sorted({r["label"] for r in train_rows})
    if len(labels) < 2:
        raise UserError(f"train: classification needs at least two labels in data/train.jsonl, found {labels}")
    label2id = {label: i for i, label in enumerate(labels)}
    id2label = {i: label for label, i in label2id.items()}

    # tokenizer
    for d in ("tokenizer", "model"):
        shutil.rmtree(ctx.path(d), ignore_errors=True)
    if cfg.tokenizer.kind == "bpe":
        tokenizer = train_bpe((r["text"] for r in train_rows), cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency, cfg.max_length)
    else:
        from transformers import AutoTokenizer

        target = resolve_model(cfg.model)
        if not hasattr(target, "is_dir"):
            raise UserError("train.tokenizer.kind=pretrained needs train.model to be a model directory, not a preset")
        tokenizer = AutoTokenizer.from_pretrained(target)
        tokenizer.model_max_length = cfg.max_length
    tokenizer.save_pretrained(ctx.path("tokenizer"))

    def encode(rows: list[dict]) -> Encoded:
        ids = tokenizer([r["text"] for r in rows], truncation=True, max_length=cfg.max_length)["input_ids"]
        return Encoded(ids, [label2id.get(r["label"], -100) for r in rows])

    train, val = encode(train_rows), encode(val_rows)
    unseen = sum(1 for y in val.labels if y < 0)
    if unseen:
        raise UserError(f"train: {unseen} validation records carry labels absent from training; use data.split.stratify=true")

    model = build_classifier(cfg.model, len(tokenizer), len(labels), cfg.max_length, cfg.dropout, id2label, tokenizer.pad_token_id)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    mean_len = sum(map(len, train.input_ids)) / len(train)
    console.print(
        f"          {cfg.model}: {n_params / 1e6:.2f}M parameters, {n_trainable / n_params:.0%} trainable; "
        f"{len(train):,} train / {len(val):,} val examples, {mean_len:.1f} tokens each on average"
    )
    result = fit(model, train, val, cfg, tokenizer.pad_token_id, ctx.config.seed)

    model.save_pretrained(ctx.path("model"), safe_serialization=True)
    tokenizer.save_pretrained(ctx.path("model"))
    state = {
        "log_history": result.history,
        "eval_history": result.evals,
        "best": result.best,
        "steps": result.steps,
        "tokens": result.tokens,
        "train_seconds": round(result.seconds, 2),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "labels": labels,
    }
    ctx.path("model", "trainer_state.json").write_text(json.dumps(state, indent=1))
    return {
        "best_val_accuracy": result.best.get("val_accuracy", 0.0),
        "final_loss": result.history[-1]["loss"] if result.history else float("nan"),
        "steps": result.steps,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "parameters": n_params,
    }
