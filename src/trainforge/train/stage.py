"""The train stage: tokenizer → model → method → fit → save, all in Hugging Face format.

Reads data/train.jsonl and data/val.jsonl (and pretrain/ when `train.model: pretrain`); writes
    tokenizer/          the tokenizer (trained BPE, or the model directory's)
    model/              config.json (with id2label), model.safetensors, tokenizer files,
                        trainer_state.json (loss curve, evals, tokens/s, trainable share)
                        — with train.ensemble: K, the K members in model.ensemble.safetensors (models/ensemble.py)
                        — for LoRA the adapter merged into the base (merge-and-export)
                        — for prompt/prefix (and unmerged LoRA) the peft adapter + base/ (models/load.py)
    adapter/            LoRA / prompt / prefix adapters: load with peft.PeftModel.from_pretrained
    checkpoints/train/  resumable state (`trainforge train CONFIG --resume`)
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from trainforge.console import console
from trainforge.data.io import read_jsonl
from trainforge.errors import UserError
from trainforge.train.config import TrainConfig


def train_task(cfg: TrainConfig, train_rows: list[dict], seed: int = 0):
    """The task train.task names, set up from the train split (a classifier's label set comes from it).
    A registered task with a `for_training(cfg, train_rows, seed)` classmethod sets itself up."""
    from trainforge.tasks import TASKS, ClassificationTask, SFTTask

    if hasattr(TASKS.get(cfg.task), "for_training"):
        return TASKS[cfg.task].for_training(cfg, train_rows, seed)
    if cfg.task == "classification":
        return ClassificationTask.from_rows(train_rows, cfg.max_length, cfg.class_weights)
    return SFTTask.from_config(cfg)


def load_tokenizer(cfg: TrainConfig, target, train_rows: list[dict]):
    """A model directory brings its own tokenizer; a fresh preset gets a BPE trained on the train split."""
    from trainforge.tasks.text import text_tokenizer

    return text_tokenizer(target, cfg.tokenizer.kind, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency, cfg.max_length,
                          (r["text"] for r in train_rows))


def classification_data(tokenizer, cfg: TrainConfig, train_rows, val_rows):
    """(train, val, labels) encoded for a classifier (benchmarks/finetune_seeds.py uses it beside the stage)."""
    from trainforge.tasks import ClassificationTask

    task = ClassificationTask.from_rows(train_rows, cfg.max_length)
    return task.encode(train_rows, tokenizer), task.encode(val_rows, tokenizer, held_out=True), task.labels


def model_spec(cfg: TrainConfig, run_dir: Path):
    from trainforge.tasks import ModelSpec

    return ModelSpec(cfg.model, cfg.max_length, cfg.dropout, run_dir=run_dir, pooling=cfg.pooling)


RECIPES = {"grpo": "trainforge.posttrain.grpo_stage:run_grpo_train", "dpo": "trainforge.posttrain.dpo_stage:run_dpo"}
"""train.task → `module:function` (ctx) -> metrics, for objectives whose step is not the supervised loop's
(rollouts, a reference model: posttrain/); each reuses this module's model building and saving."""


def run_train(ctx) -> dict:
    from trainforge.threads import torch_threads

    if ctx.section.task in RECIPES:
        import importlib

        module, _, function = RECIPES[ctx.section.task].partition(":")
        return getattr(importlib.import_module(module), function)(ctx)
    with torch_threads(ctx.section.threads):
        if ctx.section.task in RECIPES:  # an objective with a loop file of its own
            from trainforge.stages import load

            return load(RECIPES[ctx.section.task])(ctx)
        return _run_train(ctx)


def _run_train(ctx) -> dict:
    from trainforge import paths
    from trainforge.device import resolve_device
    from trainforge.models.presets import (
        check_flash_attention,
        check_optimizer,
        check_quantization,
        count_parameters,
        resolve_model,
    )
    from trainforge.tasks import write_model_info
    from trainforge.train.distributed import init
    from trainforge.train.loop import fit
    from trainforge.train.methods import apply_method

    cfg: TrainConfig = ctx.section
    device = resolve_device(ctx.config.device, "device")  # once, before any work: `device: cuda` on a CPU machine stops here
    train_rows = read_jsonl(ctx.path(paths.TRAIN_SPLIT))
    val_rows = read_jsonl(ctx.path(paths.VAL_SPLIT))
    if not train_rows or not val_rows:
        raise UserError(f"train: {paths.TRAIN_SPLIT} and {paths.VAL_SPLIT} must both hold records; lower data.split.val or add data")
    target = resolve_model(cfg.model, ctx.run_dir)
    # GPU-only options fail here, before a tokenizer is trained or a model built
    check_quantization(cfg.lora.quantize, target)
    check_optimizer(cfg.optimizer)
    if cfg.attn_implementation == "flash_attention_2":
        check_flash_attention("train.attn_implementation")
    task = train_task(cfg, train_rows, ctx.config.seed)
    # the processor: a tokenizer for text; a task that reads images (or pairs) makes its own
    tokenizer = (task.make_processor(cfg, target, train_rows) if hasattr(task, "make_processor")
                 else load_tokenizer(cfg, target, train_rows))
    pad_id = getattr(tokenizer, "pad_token_id", None) or 0
    main = init().is_main
    if main:
        for d in (paths.TOKENIZER, paths.MODEL, paths.ADAPTER):
            shutil.rmtree(ctx.path(d), ignore_errors=True)

    task.prepare_tokenizer(tokenizer)  # SFT: the chat template it frames prompts with
    train, val = task.encode(train_rows, tokenizer), task.encode(val_rows, tokenizer, held_out=True)
    spec = model_spec(cfg, ctx.run_dir)
    model = build_model(cfg, task, spec, tokenizer, target, device)
    if main:
        tokenizer.save_pretrained(ctx.path(paths.TOKENIZER))

    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    if main and keeps_adapter(cfg):  # model/base/: the untouched base the adapter in model/ applies to
        from trainforge.models.load import save_base

        save_base(model, ctx.path(paths.MODEL))
    objective = auxiliary_objective(cfg, target)
    loss_fn = objective(model)
    setup = apply_method(model, cfg, steps_per_epoch, task)
    model = setup.model
    n_params, n_trainable = count_parameters(model)
    ever = sum(p.numel() for named, _ in setup.groups for _, p in named)
    mean_len = sum(map(len, train.input_ids)) / len(train)
    if main:
        console.print(
            f"          {cfg.model} · method {cfg.method}: {n_params / 1e6:.2f}M parameters, {n_trainable:,} trainable "
            f"({n_trainable / n_params:.2%}){f', up to {ever:,} as blocks unfreeze' if setup.unfreeze else ''}; "
            f"{len(train):,} train / {len(val):,} val examples, {mean_len:.1f} tokens each on average"
        )
        if loss_fn is not None:
            console.print(f"          loss = cross-entropy + {cfg.lm_loss:g} × next-token loss on the text (train.lm_loss)")
    moe, moe_health = None, None
    if cfg.ensemble == 1:
        from trainforge.train.moe import attach

        moe, moe_fit = attach(model, cfg.moe, task, main, objective if loss_fn is not None else None)  # MoE only
        result = fit(model, train, val, cfg, pad_id, ctx.config.seed, groups=setup.groups,
                     unfreeze=setup.unfreeze, checkpoint_dir=ctx.path(paths.CHECKPOINTS, "train"), stage="train",
                     task=task, device=device,
                     **{"loss_fn_factory": objective if loss_fn is not None else None, **moe_fit})
        moe_health = moe.finish() if moe is not None else None  # the best step's routing biases back in
        results, ensemble_val = [result], None
    else:
        model, results, ensemble_val = train_ensemble(ctx, cfg, setup, lambda: build_model(cfg, task, spec, tokenizer, target, device), objective,
                                                      train, val, pad_id, steps_per_epoch, task, device)
        result = results[0]
        n_params, n_trainable = n_params * cfg.ensemble, n_trainable * cfg.ensemble
    seconds, tokens = sum(r.seconds for r in results), sum(r.tokens for r in results)

    select = task.selection[0]
    metrics = {
        f"best_{select}": ensemble_val if ensemble_val is not None else result.best.get(select, float("nan")),
        "final_loss": result.history[-1]["loss"] if result.history else float("nan"),
        "steps": sum(r.steps for r in results),
        "tokens_per_second": round(tokens / seconds if seconds else 0.0, 1),
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "trainable_share": round(n_trainable / n_params, 6),
        "nonfinite_skipped": result.nonfinite_skipped,
        "device": str(device),
    }
    if not main:
        return metrics
    samples = task.samples(model, tokenizer, val_rows)  # before saving: a merged LoRA answers as it was trained
    save_model(model, setup.peft, cfg, tokenizer, ctx.path(paths.MODEL), ctx.path(paths.ADAPTER))
    state = {
        "method": cfg.method,
        "lm_loss": cfg.lm_loss,
        "log_history": result.history,
        "eval_history": result.evals,
        "best": result.best,
        "steps": metrics["steps"],
        "tokens": tokens,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": metrics["tokens_per_second"],
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "micro_batch": result.micro_batch,
        "grad_accum": result.grad_accum,
        "nonfinite_skipped": result.nonfinite_skipped,
        "stopped_early": result.stopped_early,
        "labels": list(getattr(task, "labels", [])),
    }
    if ensemble_val is not None:  # log_history / eval_history above are member 0's curves
        state["ensemble"] = {"val_accuracy": ensemble_val, "members": [
            {"seed": ctx.config.seed + k, "best": r.best, "steps": r.steps, "seconds": round(r.seconds, 2)}
            for k, r in enumerate(results)]}
    out = ctx.path(paths.MODEL) if ctx.path(paths.MODEL).is_dir() else ctx.path(paths.ADAPTER)
    (out / paths.TRAINER_STATE_FILE).write_text(json.dumps(state, indent=1))
    if moe_health is not None:
        from trainforge.train.moe import MOE_HEALTH_FILE

        (out / MOE_HEALTH_FILE).write_text(json.dumps({"train": moe_health}, indent=1))
    write_model_info(out, task.model_info(spec, model, cfg.method, adapter=keeps_adapter(cfg)))
    metrics.update(task.write_samples(samples, out))
    return metrics


def build_model(cfg: TrainConfig, task, spec, tokenizer, target, device):
    """The task's model with train.attn_implementation; with lora.quantize, the saved causal LM loaded through
    bitsandbytes onto `device` instead (QLoRA: only a saved model can be quantised while it loads)."""
    from trainforge.models.presets import load_quantized_causal_lm, use_attention

    if cfg.lora.quantize:
        return load_quantized_causal_lm(target, cfg.lora.quantize, device, cfg.attn_implementation)
    return use_attention(task.build_model(spec, tokenizer), cfg.attn_implementation)


def auxiliary_objective(cfg: TrainConfig, target):
    """model → the loss_fn `fit` uses: None (the model's own loss), or with train.lm_loss the classifier's loss
    plus the auxiliary next-token loss through that model's output projection (train/lm_loss.py). fit calls
    it again after wrapping (`loss_fn_factory`); the tied projection is read live, so FSDP's swap is seen."""
    from trainforge.train.lm_loss import auxiliary_loss, output_projection

    source = target if isinstance(target, Path) else None
    return lambda model: auxiliary_loss(cfg.lm_loss, output_projection(model, source, live=True)) if cfg.lm_loss else None


def train_ensemble(ctx, cfg: TrainConfig, setup, new_classifier, objective, train, val, pad_id: int,
                   steps_per_epoch: int, task=None, device=None):
    """train.ensemble = K: fine-tune K classifiers from the same body with seeds seed, seed+1, … (member 0,
    which `setup` already holds, is exactly the single-model run) and join them (models/ensemble.py). Each
    member checkpoints under checkpoints/train/member-<k>/, so `--resume` skips finished members and
    continues the interrupted one.
    Returns (ensemble, each member's FitResult, the ensemble's val accuracy)."""
    import torch

    from trainforge.models.ensemble import EnsembleForSequenceClassification
    from trainforge.train.distributed import init
    from trainforge.train.loop import evaluate, fit, on_device
    from trainforge.train.methods import apply_method

    members, results = [], []
    for k in range(cfg.ensemble):
        seed = ctx.config.seed + k
        if k:  # as the runner seeds the stage before member 0 is built
            torch.manual_seed(seed)
            setup = apply_method(new_classifier(), cfg, steps_per_epoch, task)
        model = setup.model
        results.append(fit(model, train, val, cfg, pad_id, seed, groups=setup.groups, unfreeze=setup.unfreeze,
                           checkpoint_dir=ctx.path("checkpoints", "train", f"member-{k}"),
                           stage=f"train member {k + 1}/{cfg.ensemble}",
                           loss_fn_factory=objective if cfg.lm_loss else None, task=task, device=device))
        members.append(model)
    ensemble = EnsembleForSequenceClassification.from_members(members)
    on = on_device(ensemble, device) if device is not None else ensemble  # the tasks collate on the CPU
    accuracy = round(evaluate(on, val, pad_id, task=task)["val_accuracy"], 5)
    if init().is_main:
        alone = ", ".join(f"{r.best.get('val_accuracy', float('nan')):.4f}" for r in results)
        console.print(f"          ensemble of {cfg.ensemble}: val accuracy {accuracy:.4f} (members alone: {alone})")
    return ensemble, results, accuracy


def keeps_adapter(cfg: TrainConfig) -> bool:
    """model/ holds an unmerged peft adapter plus model/base/ (prompt, prefix, unmerged LoRA)."""
    return cfg.method in ("prompt", "prefix") or (cfg.method == "lora" and not cfg.lora.merge)


def save_model(model, is_peft: bool, cfg: TrainConfig, tokenizer, model_dir: Path, adapter_dir: Path) -> None:
    """HF format with the tokenizer. LoRA: adapter/ plus the merged model in model/ (merge-and-export).
    Prompt/prefix tuning cannot merge (nor LoRA with lora.merge=false): adapter/, and model/ holds the
    adapter beside the base saved in model/base/ (layout and loader: trainforge/models/load.py)."""
    if is_peft:
        model.save_pretrained(adapter_dir, safe_serialization=True)
        tokenizer.save_pretrained(adapter_dir)
        if keeps_adapter(cfg):
            from trainforge.models.load import save_adapter_dir

            save_adapter_dir(model, tokenizer, model_dir)
            return
        model = model.merge_and_unload()
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
