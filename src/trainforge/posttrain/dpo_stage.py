"""The train stage for train.task: dpo — tokenizer → model → (SFT phase) → pairs → reference log-probs → DPO → save.

    data/train.jsonl, val.jsonl ──pairs (given | labels | samples+judge)──▶ (prompt, chosen, rejected)
    train.model ──(dpo.sft_epochs > 0: SFT on the same records, train/loop.py fit)──▶ the reference
    reference ──score every pair once──▶ checkpoints/train/reference_logps.pt   (reused on --resume)
    train.method (full | freeze | lora …) on the reference ──fit_dpo (posttrain/dpo_loop.py)──▶ the policy
    writes model/ (+ adapter/) as the train stage does, task "dpo" in model/trainforge.json, and model/reference/
    (the reference, for eval's DPO-vs-SFT comparison) unless train.model is a directory (then its path is recorded)
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections import Counter
from pathlib import Path

from trainforge.console import console
from trainforge.data.io import read_jsonl
from trainforge.errors import UserError

SFT_MODEL = "sft-model"
"""checkpoints/train/sft-model/: the SFT phase's result, so --resume after it does not train it again."""


def build_pairs(rows: list[dict], cfg, fmt, model=None, tokenizer=None, seed: int = 0):
    """(pairs, dropped reasons) for train.dpo.pairs."""
    from trainforge.posttrain import preference

    d = cfg.dpo
    if d.pairs == "given":
        return preference.pairs_from_records(rows, d.prompt_field, d.chosen_field, d.rejected_field), Counter()
    if d.pairs == "labels":
        return preference.pairs_from_labels(rows, fmt)
    judge = preference.load_judge(d.judge)
    prompts = [row.get(fmt.prompt_field) or fmt.template.format(text=row.get("text", "")) for row in rows]
    sample = preference.generate_samples(model, tokenizer, fmt.max_new_tokens, d.sample_temperature, seed)
    return preference.pairs_from_samples(rows, prompts, sample, judge, d.samples_per_prompt)


def _sample(pairs: list, limit: int | None, seed: int) -> list:
    """At most `limit` pairs, a seeded sample kept in their original order."""
    import random

    if limit is None or len(pairs) <= limit:
        return pairs
    keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def tokenizer_rows(rows: list[dict], cfg) -> list[dict]:
    """Rows with a `text` for a fresh BPE (records of prompt/chosen/rejected have none)."""
    d = cfg.dpo
    if d.pairs != "given":
        return rows
    def text(v):
        return v if isinstance(v, str) else " ".join(str(m.get("content", "")) for m in v or [])
    return [{"text": " ".join(text(r.get(f)) for f in (d.prompt_field, d.chosen_field, d.rejected_field))} for r in rows]


def run_dpo(ctx) -> dict:
    from trainforge.threads import torch_threads

    with torch_threads(ctx.section.threads):
        return _run_dpo(ctx)


def _run_dpo(ctx) -> dict:
    from trainforge import paths
    from trainforge.device import resolve_device, resolve_precision
    from trainforge.models.presets import count_parameters, resolve_model
    from trainforge.posttrain.dpo import REFERENCE_FREE, LossSettings
    from trainforge.posttrain.dpo_loop import REFERENCE_FILE, fit_dpo, reference_logps
    from trainforge.posttrain.preference import encode_pairs
    from trainforge.tasks import write_model_info
    from trainforge.tasks.dpo import REFERENCE_DIR, DPOTask
    from trainforge.train.distributed import init
    from trainforge.train.methods import apply_method
    from trainforge.train.stage import build_model, keeps_adapter, load_tokenizer, model_spec, save_model

    cfg, d = ctx.section, ctx.section.dpo
    if cfg.method == "unfreeze":
        raise UserError("train.method=unfreeze is not supported with train.task=dpo; use full, freeze or lora")
    device = resolve_device(ctx.config.device, "device")
    train_rows, val_rows = read_jsonl(ctx.path(paths.TRAIN_SPLIT)), read_jsonl(ctx.path(paths.VAL_SPLIT))
    if not train_rows or not val_rows:
        raise UserError(f"train: {paths.TRAIN_SPLIT} and {paths.VAL_SPLIT} must both hold records; lower data.split.val or add data")
    target = resolve_model(cfg.model, ctx.run_dir)
    task = DPOTask.from_config(cfg)
    tokenizer = load_tokenizer(cfg, target, tokenizer_rows(train_rows, cfg))
    main = init().is_main
    if main:
        for p in (paths.TOKENIZER, paths.MODEL, paths.ADAPTER):
            shutil.rmtree(ctx.path(p), ignore_errors=True)
    task.prepare_tokenizer(tokenizer)
    spec = model_spec(cfg, ctx.run_dir)
    model = build_model(cfg, task, spec, tokenizer, target, device)
    if main:
        tokenizer.save_pretrained(ctx.path(paths.TOKENIZER))
    ckpt = ctx.path(paths.CHECKPOINTS, "train")
    pad = tokenizer.pad_token_id
    seed = ctx.config.seed

    # ---- 1. the SFT phase (optional): the same loop as task sft, on the same records
    sft_seconds, sft_steps = 0.0, 0
    if d.sft_epochs > 0:
        done = ckpt / SFT_MODEL / "trainer_state.json"
        if cfg.resume and done.is_file():
            from trainforge.models.load import load_causal_lm

            model = load_causal_lm(ckpt / SFT_MODEL).to(device)
            sft_steps = json.loads(done.read_text())["steps"]
            console.print(f"          sft phase: done before the interruption ({ckpt / SFT_MODEL})")
        else:
            from trainforge.train.loop import fit

            sft_cfg = cfg.model_copy(update={"epochs": d.sft_epochs, "max_steps": None, "lr": d.sft_lr or cfg.lr, "task": "sft"})
            sft_train, sft_val = task.sft.encode(train_rows, tokenizer), task.sft.encode(val_rows, tokenizer, held_out=True)
            setup = apply_method(model, sft_cfg, math.ceil(len(sft_train) / cfg.batch_size), task.sft)
            r = fit(setup.model, sft_train, sft_val, sft_cfg, pad, seed, groups=setup.groups, unfreeze=setup.unfreeze,
                    checkpoint_dir=ckpt / "sft", stage="sft", task=task.sft, device=device)
            model = setup.model.merge_and_unload() if setup.peft else setup.model
            sft_seconds, sft_steps = r.seconds, r.steps
            if main:
                model.save_pretrained(ckpt / SFT_MODEL, safe_serialization=True)
                done.write_text(json.dumps({"steps": r.steps, "seconds": r.seconds, "best": r.best}))

    # ---- 2. pairs, from the records (or sampled from the reference and judged)
    train_pairs, dropped = build_pairs(train_rows, cfg, task.fmt, model, tokenizer, seed)
    val_pairs, val_dropped = build_pairs(val_rows, cfg, task.fmt, model, tokenizer, seed + 1)
    if not train_pairs:
        raise UserError(f"train.dpo.pairs={d.pairs}: no preference pairs from {paths.TRAIN_SPLIT} "
                        f"(dropped: {dict(dropped) or 'none'}); check the records' fields or the judge's scores")
    train_pairs, val_pairs = _sample(train_pairs, d.max_pairs, seed), _sample(val_pairs, d.max_val_pairs, seed + 1)
    train_enc, val_enc = encode_pairs(train_pairs, tokenizer, cfg.max_length), encode_pairs(val_pairs, tokenizer, cfg.max_length)

    # ---- 3. the reference: log-probs once (only the policy stays in memory), or a frozen copy kept loaded
    reference, ref_model, reference_seconds = None, None, 0.0
    if d.loss not in REFERENCE_FREE:
        if d.precompute_reference:
            precision = resolve_precision(cfg.precision, device, "train.precision")
            reference, reference_seconds = reference_logps(model, {"train": train_enc, "val": val_enc}, ckpt / REFERENCE_FILE,
                                                           pad, d.reference_batch_size, device, precision, cfg.resume)
        else:
            ref_model = copy.deepcopy(model)
    if main:
        reference_dir = ctx.path(paths.MODEL, REFERENCE_DIR)
        if not isinstance(target, Path) or d.sft_epochs > 0:  # the reference was made here: keep it for eval
            model.save_pretrained(reference_dir, safe_serialization=True)
            tokenizer.save_pretrained(reference_dir)

    # ---- 4. DPO on the method's trainable parameters
    setup = apply_method(model, cfg, math.ceil(len(train_enc) / cfg.batch_size), task)
    n_params, n_trainable = count_parameters(setup.model)
    if main:
        console.print(f"          {len(train_enc):,} train / {len(val_enc):,} val pairs ({d.pairs}); method {cfg.method}: "
                      f"{n_trainable:,} of {n_params:,} parameters train"
                      + (f"; reference log-probs in {reference_seconds:.1f}s" if reference_seconds else ""))
    settings = LossSettings(d.loss, d.beta, d.label_smoothing, d.simpo_gamma, d.orpo_lambda)
    result = fit_dpo(setup.model, train_enc, val_enc, cfg, settings, pad, seed, groups=setup.groups,
                     checkpoint_dir=ckpt / "dpo", reference=reference, ref_model=ref_model, device=device)
    del ref_model
    last = result.final
    metrics = {
        "final_loss": last.get("loss", float("nan")),
        **{f"final_{k.replace('/', '_')}": last.get(k, float("nan")) for k in ("rewards/margins", "rewards/accuracies")},
        "steps": result.steps, "sft_steps": sft_steps, "pairs": len(train_enc), "val_pairs": len(val_enc),
        **{f"pairs_dropped_{k}": v for k, v in (dropped + val_dropped).items()},  # pairs_from_* reasons (no label, ties …)
        "reference_seconds": round(reference_seconds, 2),
        "tokens_per_second": round(result.tokens / result.seconds if result.seconds else 0.0, 1),
        "parameters": n_params, "trainable_parameters": n_trainable, "device": str(device),
    }
    if result.evals:
        metrics.update({k.replace("/", "_"): v for k, v in result.evals[-1].items() if k != "step"})
    if not main:
        return metrics

    # ---- 5. save as the train stage does
    if d.pairs == "labels":
        sample_rows = val_rows
    else:  # the chosen answer is the expected one (a conversation's last user turn stands for its prompt)
        sample_rows = [{"id": p.id, task.fmt.prompt_field: p.prompt if isinstance(p.prompt, str) else p.prompt[-1]["content"],
                        task.fmt.response_field: p.chosen} for p in val_pairs]
    samples = task.samples(setup.model, tokenizer, sample_rows)
    save_model(setup.model, setup.peft, cfg, tokenizer, ctx.path(paths.MODEL), ctx.path(paths.ADAPTER))
    out = ctx.path(paths.MODEL) if ctx.path(paths.MODEL).is_dir() else ctx.path(paths.ADAPTER)
    state = {
        "method": cfg.method, "task": "dpo", "dpo": d.model_dump(mode="json"),
        "log_history": result.history, "eval_history": result.evals, "best": result.evals[-1] if result.evals else {},
        "steps": result.steps, "tokens": result.tokens, "train_seconds": round(result.seconds + sft_seconds, 2),
        "dpo_seconds": round(result.seconds, 2), "sft_seconds": round(sft_seconds, 2), "sft_steps": sft_steps,
        "reference_seconds": round(reference_seconds, 2), "tokens_per_second": metrics["tokens_per_second"],
        "parameters": n_params, "trainable_parameters": n_trainable, "micro_batch": result.micro_batch,
        "grad_accum": result.grad_accum, "nonfinite_skipped": result.nonfinite_skipped, "stopped_early": False,
        "pairs": len(train_enc), "pairs_dropped": dict(dropped + val_dropped),
        "reference_model": str(target) if isinstance(target, Path) and d.sft_epochs == 0 else REFERENCE_DIR,
    }
    (out / paths.TRAINER_STATE_FILE).write_text(json.dumps(state, indent=1))
    write_model_info(out, task.model_info(spec, setup.model, cfg.method, adapter=keeps_adapter(cfg)))
    metrics.update(task.write_samples(samples, out))
    return metrics
