"""The pretrain stage: a causal LM from scratch on general text, then on the run's unlabelled in-domain text.

The first two steps of ULMFiT (Howard & Ruder, 2018):
    1. general-domain LM     the corpus (default: People's Daily 1998 news)   → knows the language
    2. in-domain LM          data/train.jsonl texts, labels unused            → knows how reviews talk
    (3. the classifier is the train stage: `train.model: pretrain`, method unfreeze)

Writes
    pretrain/            config.json + model.safetensors (LlamaForCausalLM) + tokenizer files
    pretrain/pretrain_state.json   both phases' loss curves and held-out LM losses
Documents are packed: <s> doc </s> <s> doc </s> … cut into seq_len blocks, so no token is padding.
"""

from __future__ import annotations

import json
import random
import shutil

from trainforge.console import console
from trainforge.data.io import read_jsonl
from trainforge.errors import UserError
from trainforge.train.config import PretrainConfig


def corpus_texts(cfg: PretrainConfig) -> list[str]:
    from trainforge.data.io import Record, read_source

    texts = []
    for src in cfg.corpus:
        texts += [item.text for item in read_source(src) if isinstance(item, Record)]
    if cfg.corpus_limit is not None:
        texts = texts[: cfg.corpus_limit]
    if not texts:
        raise UserError("pretrain.corpus: the sources yielded no text; check pretrain.corpus[].path / builtin")
    return texts


def pack(tokenizer, texts: list[str], seq_len: int):
    """Concatenate the documents' tokens (each framed <s> … </s>) and cut into seq_len blocks → Encoded."""
    from trainforge.tasks import CausalLMTask

    return CausalLMTask(seq_len).encode([{"text": t} for t in texts], tokenizer)


def run_pretrain(ctx) -> dict:
    from trainforge.threads import torch_threads

    with torch_threads(ctx.section.threads):
        return _run_pretrain(ctx)


def _run_pretrain(ctx) -> dict:
    from trainforge import paths
    from trainforge.device import resolve_device
    from trainforge.models.presets import (
        check_flash_attention,
        check_optimizer,
        count_parameters,
        use_attention,
    )
    from trainforge.models.tokenizer import train_bpe
    from trainforge.tasks import CausalLMTask, ModelSpec, write_model_info
    from trainforge.train.distributed import init
    from trainforge.train.loop import fit
    from trainforge.train.moe import attach

    cfg: PretrainConfig = ctx.section
    device = resolve_device(ctx.config.device, "device")  # once: a missing GPU fails before the corpus is read
    check_optimizer(cfg.optimizer, "pretrain.optimizer")
    if cfg.attn_implementation == "flash_attention_2":
        check_flash_attention("pretrain.attn_implementation")
    general = corpus_texts(cfg) if cfg.epochs > 0 else []  # epochs 0: ULMFiT's step 2 alone (an ablation)
    if not general and cfg.in_domain_epochs <= 0:
        raise UserError("pretrain: pretrain.epochs and pretrain.in_domain_epochs are both 0 — nothing to train; "
                        "remove the pretrain: section instead")
    in_domain, in_domain_val = [], []
    if cfg.in_domain_epochs > 0:
        if not ctx.path(paths.TRAIN_SPLIT).is_file():
            raise UserError(f"pretrain.in_domain_epochs={cfg.in_domain_epochs} needs {ctx.path(paths.TRAIN_SPLIT)}: "
                            f"add a data: section, or set pretrain.in_domain_epochs=0")
        in_domain = [r["text"] for r in read_jsonl(ctx.path(paths.TRAIN_SPLIT))]
        if ctx.path(paths.VAL_SPLIT).is_file():
            in_domain_val = [r["text"] for r in read_jsonl(ctx.path(paths.VAL_SPLIT))]

    out = ctx.path(paths.PRETRAIN)
    shutil.rmtree(out, ignore_errors=True)
    tokenizer = train_bpe(general + in_domain, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency, cfg.seq_len, family="llama")
    task = CausalLMTask(cfg.seq_len, cfg.chunked_ce)
    spec = ModelSpec(cfg.model, cfg.seq_len, cfg.dropout, overrides=dict(cfg.config_overrides),
                     overrides_key="pretrain.config_overrides")
    model = use_attention(task.build_model(spec, tokenizer), cfg.attn_implementation, "pretrain.attn_implementation")
    n_params, _ = count_parameters(model)
    objective = None  # fit's loss: the task's, unless multi-token prediction adds its modules' loss (train/mtp.py)
    if cfg.mtp_depth:
        from trainforge.train import mtp

        mtp.attach(model, cfg.mtp_depth)
        objective = lambda trained: mtp.loss_fn(task.loss, cfg.mtp_lambda)  # noqa: E731
        console.print(f"          multi-token prediction: {cfg.mtp_depth} module(s), loss weight λ={cfg.mtp_lambda:g} "
                      f"({count_parameters(model)[0] - n_params:,} parameters, dropped at export)")
    pad = tokenizer.pad_token_id
    phases, metrics, moe_health = {}, {}, {}
    changed = "".join(f", {k}={v}" for k, v in cfg.config_overrides.items())
    console.print(f"          {cfg.model}{changed}: {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer):,}")
    if general:
        random.Random(ctx.config.seed).shuffle(general)
        n_val = max(1, int(len(general) * cfg.val_share))
        general_train, general_val = pack(tokenizer, general[n_val:], cfg.seq_len), pack(tokenizer, general[:n_val], cfg.seq_len)
        if len(general_train) < 1:
            raise UserError(f"pretrain.corpus: fewer tokens than one {cfg.seq_len}-token block; add text or lower pretrain.seq_len")
        console.print(f"          general corpus: {len(general_train):,} × {cfg.seq_len} tokens ({len(general):,} documents)")
        moe, moe_fit = attach(model, cfg.moe, task, init().is_main, objective)  # MoE: balancing + health (train/moe.py)
        phases["general"] = fit(model, general_train, general_val, cfg, pad, ctx.config.seed,
                                checkpoint_dir=ctx.path(paths.CHECKPOINTS, "pretrain-general"), stage="pretrain", task=task,
                                device=device, **{"loss_fn_factory": objective, **moe_fit})
        if moe is not None:
            moe_health["general"] = moe.finish()
        metrics["general_val_loss"] = phases["general"].best.get("val_loss", float("nan"))

    if in_domain:
        dom_train = pack(tokenizer, in_domain, cfg.seq_len)
        dom_val = pack(tokenizer, in_domain_val, cfg.seq_len) if in_domain_val else None
        if dom_val is not None:
            metrics["in_domain_val_loss_before"] = task.validate(model, dom_val, pad)["val_loss"]
        dom_cfg = cfg.model_copy(update={"epochs": cfg.in_domain_epochs, "max_steps": None, "lr": cfg.in_domain_lr or cfg.lr})
        console.print(f"          in-domain LM fine-tuning: {len(dom_train):,} × {cfg.seq_len} tokens from data/train.jsonl (labels unused)")
        moe, moe_fit = attach(model, cfg.moe, task, init().is_main, objective)
        phases["in_domain"] = fit(model, dom_train, dom_val, dom_cfg, pad, ctx.config.seed + 1,
                                  checkpoint_dir=ctx.path(paths.CHECKPOINTS, "pretrain-in-domain"), stage="pretrain-in-domain",
                                  task=task, device=device, **{"loss_fn_factory": objective, **moe_fit})
        if moe is not None:
            moe_health["in_domain"] = moe.finish()
        if dom_val is not None:
            metrics["in_domain_val_loss_after"] = phases["in_domain"].best.get("val_loss", float("nan"))

    if cfg.mtp_depth:
        mtp.detach(model)  # the saved model is the plain causal LM (next-token logits unchanged)
    if init().is_main:
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        write_model_info(out, task.model_info(spec, model, method="pretrain", adapter=False))
        state = {name: {"log_history": r.history, "eval_history": r.evals, "best": r.best, "steps": r.steps, "tokens": r.tokens,
                        "seconds": round(r.seconds, 2), "tokens_per_second": round(r.tokens_per_second, 1)}
                 for name, r in phases.items()}
        if moe_health:
            from trainforge.train.moe import MOE_HEALTH_FILE

            (out / MOE_HEALTH_FILE).write_text(json.dumps(moe_health, indent=1))
        (out / "pretrain_state.json").write_text(json.dumps({"parameters": n_params, "phases": state, "metrics": metrics}, indent=1))
    metrics.update(
        parameters=n_params,
        device=str(device),
        tokens=sum(r.tokens for r in phases.values()),
        seconds=round(sum(r.seconds for r in phases.values()), 2),
        tokens_per_second=round(sum(r.tokens for r in phases.values()) / max(1e-9, sum(r.seconds for r in phases.values())), 1),
    )
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}
