"""The eval stage: the run's model scored beside a baseline on a held-out split, by the model's own task.

    model/trainforge.json ──▶ the task (tasks/) ──▶ task.evaluate ──▶ eval/metrics.json + the task's analysis

What each task writes: evaluate/classifier.py (classification: metrics, confusion matrix, error
analysis, attention maps, adversarial tests) and evaluate/lm.py (causal LM and SFT: perplexity beside
an n-gram LM, generation metrics beside a retrieval baseline). eval/metrics.json is the contract other
stages and tools read: {"split", "n", "labels", "model": {...}, "baseline": {"name", ...},
"model_beats_baseline", "compared": [...], "device": {...}}.

The model runs on the run's `device:` (resolved once here, trainforge/device.py) in fp32; batches go
to it and logits come back to the CPU, so on the CPU the numbers are exactly those of a CPU-only build.
"""

from __future__ import annotations

import shutil

from trainforge.data.io import read_jsonl
from trainforge.errors import UserError
from trainforge.evaluate.config import EvalConfig

# outputs of an earlier run that this one may not rewrite must not linger beside fresh ones
STALE_OUTPUTS = ("regression.json", "adversarial.json", "slices.png", "lm_eval.json", "curves.json")


def run_eval(ctx) -> dict:
    from trainforge import paths
    from trainforge.device import resolve_device
    from trainforge.tasks import EvalJob, task_for
    from trainforge.threads import torch_threads

    cfg: EvalConfig = ctx.section
    out = ctx.path(paths.EVAL)
    out.mkdir(exist_ok=True)
    for stale in STALE_OUTPUTS:
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / "attention", ignore_errors=True)
    split_file = ctx.path(paths.split_file(cfg.split))
    rows = read_jsonl(split_file)
    train_rows = read_jsonl(ctx.path(paths.TRAIN_SPLIT))
    if not rows:
        raise UserError(f"{split_file} is empty: nothing to evaluate (check data.split)")
    model_dir = ctx.path(paths.MODEL)
    task, info = task_for(model_dir)
    device = resolve_device(ctx.config.device, "device")  # before any model loads: a missing GPU fails at once
    with torch_threads(None):  # a task may lower the thread count for small models; the next stage gets it back
        return task.evaluate(EvalJob(model_dir, info, rows, train_rows, cfg, ctx.config.seed, out, split_file, device))
