"""train.task=grpo inside the train stage: tokenizer → model → (SFT phase) → method → GRPO → save.

Reads data/train.jsonl (prompts with a `reference` answer or any columns the rewards read) and data/val.jsonl;
writes what the train stage always writes, in the same formats, so eval, compress and serve read it unchanged:
    model/               the GRPO policy (HF format, safetensors), trainforge.json (task grpo), trainer_state.json
                         (every step's GRPO metrics), grpo.json (rewards, sampling, compute of each phase)
    model/sft/           the SFT-phase model when grpo.sft_steps > 0 (the eval's comparison)
    adapter/             with method lora
    checkpoints/train/   sft/ and grpo/: resumable state (`trainforge train CONFIG --resume`)
"""

from __future__ import annotations

import json
import math
import shutil

from trainforge.console import console
from trainforge.data.io import read_jsonl
from trainforge.errors import UserError


def _texts(rows: list[dict]):
    """What a fresh BPE is trained on: every prompt, worked response and reference of the train split."""
    for r in rows:
        for key in ("prompt", "response", "reference", "text"):
            if isinstance(r.get(key), str):
                yield r[key]


def run_grpo_train(ctx) -> dict:
    from trainforge import paths
    from trainforge.device import resolve_device
    from trainforge.models.presets import count_parameters, resolve_model
    from trainforge.posttrain.grpo_loop import encode_prompts, frame_labelled, grpo_fit
    from trainforge.tasks import ModelSpec, write_model_info
    from trainforge.tasks.grpo import GRPO_FILE, GRPOTask
    from trainforge.tasks.info import PromptFormat
    from trainforge.tasks.text import text_tokenizer
    from trainforge.train.methods import apply_method
    from trainforge.train.stage import build_model, keeps_adapter, save_model

    from trainforge.train.distributed import init

    cfg, g = ctx.section, ctx.section.grpo
    if init().active:
        raise UserError("train.task=grpo runs in one process (its rollouts and updates are not sharded across ranks yet); "
                        "run it without torchrun")
    if cfg.method in ("prompt", "prefix"):
        raise UserError(f"train.task=grpo with method {cfg.method}: the rollout engine (serve's KV-cache decoder) cannot "
                        f"carry peft's virtual tokens; use method full, freeze or lora")
    device = resolve_device(ctx.config.device, "device")
    train_rows, val_rows = read_jsonl(ctx.path(paths.TRAIN_SPLIT)), read_jsonl(ctx.path(paths.VAL_SPLIT))
    if not train_rows or not val_rows:
        raise UserError(f"train: {paths.TRAIN_SPLIT} and {paths.VAL_SPLIT} must both hold records; lower data.split.val or add data")
    train_rows, val_rows = (frame_labelled(rows, g.prompt_field, cfg.sft.template, dict(cfg.sft.label_names))
                            for rows in (train_rows, val_rows))
    target = resolve_model(cfg.model, ctx.run_dir)
    task = GRPOTask(PromptFormat(g.prompt_field, g.sft_response_field, cfg.sft.template, dict(cfg.sft.label_names),
                                 g.max_new_tokens), cfg.max_length)
    tokenizer = text_tokenizer(target, cfg.tokenizer.kind, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency,
                               cfg.max_length, _texts(train_rows))
    for d in (paths.TOKENIZER, paths.MODEL, paths.ADAPTER):
        shutil.rmtree(ctx.path(d), ignore_errors=True)
    if not cfg.resume:  # a fresh run: an earlier run's later-numbered checkpoints would outlive (and outrank) this one's
        for phase in ("sft", "grpo"):
            shutil.rmtree(ctx.path(paths.CHECKPOINTS, "train", phase), ignore_errors=True)
    task.prepare_tokenizer(tokenizer)
    spec = ModelSpec(cfg.model, cfg.max_length, cfg.dropout, run_dir=ctx.run_dir)
    model = build_model(cfg, task, spec, tokenizer, target, device)
    tokenizer.save_pretrained(ctx.path(paths.TOKENIZER))

    sft_seconds = sft_steps = 0
    if g.sft_steps:  # the SFT phase: the supervised loop on the worked responses, then GRPO from there
        from trainforge.train.loop import fit

        missing = sum(g.sft_response_field not in r and "label" not in r for r in train_rows)
        if missing:
            raise UserError(f"grpo.sft_steps={g.sft_steps}: {missing} train records have neither a '{g.sft_response_field}' "
                            f"field (grpo.sft_response_field) nor a label; set grpo.sft_steps: 0 to start GRPO from train.model")
        sft_cfg = cfg.model_copy(update={"max_steps": g.sft_steps, "lr": g.sft_lr or cfg.lr, "eval_every": None})
        enc_train, enc_val = task.encode(train_rows, tokenizer), task.encode(val_rows, tokenizer, held_out=True)
        res = fit(model, enc_train, enc_val, sft_cfg, tokenizer.pad_token_id, ctx.config.seed,
                  checkpoint_dir=ctx.path(paths.CHECKPOINTS, "train", "sft"), stage="sft", task=task, device=device)
        sft_seconds, sft_steps = res.seconds, res.steps
        sft_dir = ctx.path(paths.MODEL, "sft")
        model.save_pretrained(sft_dir, safe_serialization=True)
        tokenizer.save_pretrained(sft_dir)
        from trainforge.tasks import SFTTask

        write_model_info(sft_dir, SFTTask(task.fmt, cfg.max_length).model_info(spec, model, "full", adapter=False))

    prompts = encode_prompts(train_rows, tokenizer, g.prompt_field, max(8, cfg.max_length - g.max_new_tokens))
    setup = apply_method(model, cfg, math.ceil(len(prompts.ids) / g.prompts_per_step), task)
    n_params, n_trainable = count_parameters(setup.model)
    console.print(f"          {cfg.model} · method {cfg.method} · GRPO: {n_params / 1e6:.2f}M parameters, {n_trainable:,} "
                  f"trainable; {len(prompts.ids):,} prompts × G={g.group_size}, {g.prompts_per_step} prompts per step, "
                  f"μ={g.iterations}, loss {g.loss_type}, scale_rewards {g.scale_rewards}, β={g.beta}")
    result = grpo_fit(setup.model, tokenizer, prompts, cfg, g, ctx.config.seed, groups=setup.groups,
                      checkpoint_dir=ctx.path(paths.CHECKPOINTS, "train", "grpo"), device=device)

    out = ctx.path(paths.MODEL)
    save_model(setup.model, setup.peft, cfg, tokenizer, out, ctx.path(paths.ADAPTER))
    last = result.history[-1] if result.history else {}
    state = {"method": cfg.method, "log_history": result.history, "steps": result.steps, "updates": result.updates,
             "grpo_seconds": round(result.seconds, 2), "generation_seconds": round(result.generation_seconds, 2),
             "generation_share": round(result.generation_share, 4), "completions": result.completions,
             "sft_steps": sft_steps, "sft_seconds": round(sft_seconds, 2), "parameters": n_params,
             "trainable_parameters": n_trainable}
    (out / "trainer_state.json").write_text(json.dumps(state, indent=1))
    write_model_info(out, task.model_info(spec, setup.model, cfg.method, adapter=keeps_adapter(cfg)))
    meta = {"prompt_field": g.prompt_field, "template": cfg.sft.template, "label_names": dict(cfg.sft.label_names), "rewards": [r.name for r in g.rewards],
            "reward_specs": [r.model_dump(mode="json") for r in g.rewards], "max_new_tokens": g.max_new_tokens,
            "temperature": g.temperature, "eval_samples": g.eval_samples, "eval_prompts": g.eval_prompts,
            "sft_seconds": round(sft_seconds, 2), "grpo_seconds": round(result.seconds, 2)}
    (out / GRPO_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    return {"steps": result.steps, "updates": result.updates, "final_reward": last.get("reward", float("nan")),
            "grpo_seconds": round(result.seconds, 2), "sft_seconds": round(sft_seconds, 2),
            "generation_share": round(result.generation_share, 4), "parameters": n_params,
            "trainable_parameters": n_trainable, "device": str(device)}
