"""The training loop, in one file that reads top to bottom.

    setup: device and precision, ranks, fp32 masters, memory estimate (→ micro-batch), move → wrap,
           optimizer groups, autocast/scaler, resume
    for each step:
        unfreeze? → lr_at(step) → micro-batches to the device: forward, backward (no grad sync until the last)
        → non-finite? skip and count → unscale, clip, step → log → evaluate, keep best (on the CPU), checkpoint
    end: load the best weights (under FSDP: gather them whole into `model`)

One loop serves every supervised task (trainforge/tasks/): the task batches the examples, gives the
loss and the validation scores, and names the metric that picks the best step. Objectives that need a
different step (a reference model, rollouts) get a recipe file of their own beside this one.

Batches are length-bucketed (trainforge/batching.py): padding drops to a few percent and tokens/s rises.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainforge import device as devices
from trainforge.batching import (  # noqa: F401 (re-exported)
    Encoded,
    bucketed_batches,
    collate,
    eval_batches,
    predict_logits,
)
from trainforge.console import console, progress_bar
from trainforge.errors import UserError
from trainforge.train import callbacks as hooks
from trainforge.train import checkpoint, distributed, memory
from trainforge.train.config import LoopConfig, ScheduleConfig

# --------------------------------------------------------------------------- schedule and optimizer


def lr_at(step: int, total_steps: int, peak: float, schedule: ScheduleConfig) -> float:
    """Linear warmup to `peak`, then cosine / linear / constant down to peak * min_lr_ratio."""
    warmup = int(round(schedule.warmup_ratio * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    floor = peak * schedule.min_lr_ratio
    if schedule.decay == "constant" or total_steps <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if schedule.decay == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(groups: list[tuple[list[tuple[str, torch.nn.Parameter]], float]], weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices only, never on biases, norms or 1-d parameters.
    Each input group keeps its lr scale (discriminative learning rates)."""
    out, seen = [], set()
    for named, lr_scale in groups:
        decay, no_decay = [], []
        for name, p in named:
            if id(p) in seen:  # tied weights appear once
                continue
            seen.add(id(p))
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        out += [{"params": decay, "weight_decay": weight_decay, "lr_scale": lr_scale},
                {"params": no_decay, "weight_decay": 0.0, "lr_scale": lr_scale}]
    return [g for g in out if g["params"]]


# --------------------------------------------------------------------------- validation


def optimizer_step(optimizer, scaler, params, grad_clip: float) -> None:
    """Unscale (fp16 on CUDA), clip the gradients' global norm, step, zero: one update, shared by every recipe."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def default_task(enc: Encoded):
    """The task a caller that names none gets (tests, benchmarks): per-token targets mean a causal LM's
    next-token objective, integer labels a classifier's. Stages always pass their task."""
    from trainforge.tasks import CausalLMTask, ClassificationTask

    return CausalLMTask() if enc.token_labels is not None else ClassificationTask()


def evaluate(model: torch.nn.Module, val: Encoded, pad_id: int, batch_size: int = 64, task=None) -> dict:
    """The task's validation scores: classification val_loss and val_accuracy; causal LM token-weighted
    val_loss and perplexity."""
    return (task or default_task(val)).validate(model, val, pad_id, batch_size)


class _OnDevice(torch.nn.Module):
    """`model` whose forward takes CPU batches: the tasks' validate collates on the CPU (trainforge/tasks/)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        super().__init__()
        self.model, self.device_ = model, device

    @property
    def config(self):  # batching.predict_logits reads num_labels
        return self.model.config

    def forward(self, **batch):
        return self.model(**{k: v.to(self.device_) if isinstance(v, torch.Tensor) and v.device != self.device_ else v
                             for k, v in batch.items()})


def on_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return model if device.type == "cpu" else _OnDevice(model, device)


# --------------------------------------------------------------------------- the loop


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    nonfinite_skipped: int = 0
    stopped_early: bool = False
    micro_batch: int = 0
    grad_accum: int = 1

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class Weights:
    """How one micro-batch's loss adds up to the gradient of one process on the whole global batch,
    whatever the gradient accumulation and the number of ranks: a mean over its examples is multiplied
    by `examples` (its share of this rank's examples), and a sum over its predicted tokens is divided by
    `tokens` (the global batch's predicted tokens ÷ ranks, since DDP averages the ranks' gradients).
    A per-micro-batch token mean would weight a short micro-batch's tokens more than a long one's."""

    examples: float
    tokens: float


class NonFiniteLoss(UserError):
    """Training diverged: too many non-finite losses in a row."""


def fit(model: torch.nn.Module, train: Encoded, val: Encoded | None, cfg: LoopConfig, pad_id: int, seed: int, *,
        groups=None, unfreeze=None, checkpoint_dir: Path | None = None, stage: str = "train",
        loss_fn=None, loss_fn_factory=None, task=None, device=None, callbacks=None) -> FitResult:
    """Train `model` in place; at the end it holds the weights that scored best on val.

    groups: [(named params, lr scale)] the optimizer holds (default: every trainable parameter);
    unfreeze: a methods.UnfreezePlan to call each step; checkpoint_dir: where resumable state goes;
    task: the kind of model (trainforge/tasks/): batches, the loss, validation and the metric that picks the
    best step (default: `default_task(train)`);
    loss_fn(net, batch, weights) → loss replaces the task's loss (e.g. train/lm_loss.py's auxiliary LM
    term); it applies `weights` (a `Weights`) itself. loss_fn_factory(model) → loss_fn builds it after the
    model is moved and wrapped, so it can hold the parameters as they are then (FSDP replaces every one);
    device: a torch.device or a config spec ("cuda", "cpu", …; default: where `model` already is);
    callbacks: objects called after each optimizer step and each evaluation, saved in checkpoints
    (train/callbacks.py; also those made active around the call).

    Under FSDP the caller's `model` is left untouched while a sharded copy trains, and receives the full
    (gathered) best weights at the end on every rank: what rank 0 saves, merges or samples from is whole.
    """
    # ---- setup
    if device is None:  # where the caller built it: every CPU test keeps running where it ran
        device = next(model.parameters()).device
    elif isinstance(device, str):
        device = devices.resolve_device(device, "device")
    precision = devices.resolve_precision(cfg.precision, device, f"{stage}.precision")
    deterministic = devices.set_deterministic(cfg.deterministic)  # before the first kernel runs
    tf32 = devices.enable_tf32(device) if precision != "fp16" else False
    dist = distributed.init(cfg.dist_timeout_minutes, device)
    fsdp = dist.active and cfg.distributed == "fsdp"
    if dist.is_main:
        about = devices.describe(device)
        memory_text = f", {about['memory_gib']} GiB" if "memory_gib" in about else ""
        console.print(f"          {stage} on {about['device']} ({about.get('name', '?')}{memory_text}), precision {precision}"
                      f"{', TF32 matmuls' if tf32 else ''}{f' × {dist.world} ranks ({cfg.distributed})' if dist.active else ''}")
        if deterministic:
            console.print(f"          {deterministic}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    task = task or default_task(train)
    cbs = hooks.collect(callbacks)
    select, higher_is_better = task.selection
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.max_steps or max(1, int(round(cfg.epochs * steps_per_epoch)))
    eval_every = cfg.eval_every or steps_per_epoch
    # tokens each example has a next-token loss on (the task's targets; for a classifier, what train.lm_loss predicts)
    predicted = task.predicted_tokens(train)

    # fp32 master weights: a checkpoint loaded in half precision (dtype auto) would otherwise step in fp16/bf16
    # (updates below the half-precision spacing vanish; GradScaler refuses fp16 gradients). A frozen base
    # (LoRA) may stay half: it never steps. Nothing changes for an fp32 model.
    if any(p.requires_grad and p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters()):
        for p in model.parameters():
            if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16):
                p.data = p.data.float()
        if precision == "fp32" and dist.is_main:
            console.print(f"[yellow]          trainable half-precision weights upcast to fp32; {stage}.precision=fp32 runs the "
                          f"frozen half weights in fp32 matmuls only where autocast is on — consider bf16[/]")
    if cfg.gradient_checkpointing:  # recompute each block in backward: activations ÷ ~layers for ~30% more compute
        if not getattr(model, "supports_gradient_checkpointing", False) or not hasattr(model, "gradient_checkpointing_enable"):
            raise UserError(f"{stage}.gradient_checkpointing: {type(model).__name__} does not support gradient checkpointing "
                            f"(Hugging Face models do); set {stage}.gradient_checkpointing: false")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # memory estimate → micro-batch (per rank) and accumulation
    micro = cfg.batch_size // cfg.grad_accum // dist.world
    if micro < 1:
        raise UserError(f"{stage}.batch_size={cfg.batch_size} is smaller than grad_accum × ranks = {cfg.grad_accum * dist.world}")
    seq_len = max(len(x) for x in train.input_ids[:1000])
    limit = int((cfg.memory_limit_gb * (1 << 30)) if cfg.memory_limit_gb else 0.8 * devices.available_memory(device))
    # the vocabulary logits held at once: all of them (LM head, train.lm_loss), or none beyond one chunk with chunked_ce
    vocab_logits = (task.token_level and not cfg.chunked_ce) or loss_fn is not None or loss_fn_factory is not None
    fitted, est = memory.fit_micro_batch(model, micro, seq_len, precision, vocab_logits, limit,
                                         shards=dist.world if fsdp else 1, checkpointing=cfg.gradient_checkpointing,
                                         snapshot=val is not None, on_cpu=device.type == "cpu")
    if dist.is_main:
        console.print(f"          memory estimate at micro-batch {micro}×{seq_len} tokens: {est.describe()} (limit {limit / (1 << 30):.1f} GiB)")
        if fitted != micro:
            console.print(f"[yellow]          over the limit: micro-batch {micro} → {fitted}, gradient accumulation ×{micro // fitted} "
                          f"(same {cfg.batch_size} examples per step)[/]")
        if est.total > limit:
            console.print("[yellow]          still over the limit at the smallest micro-batch; expect swapping or an OOM "
                          "(try method=lora, a smaller model or max_length)[/]")
    micro = fitted

    if groups is None:
        groups = [([(n, p) for n, p in model.named_parameters() if p.requires_grad], 1.0)]
    if unfreeze is not None:
        unfreeze.apply(0)
    if fsdp:
        # fully_shard swaps every parameter of the module it shards for a DTensor shard. It shards a copy, so
        # the caller's `model` stays a plain module (saved, merged, sampled on rank 0 alone at the end) and
        # receives the gathered weights when training ends; groups are re-pointed at the copy by name.
        if unfreeze is not None:
            raise UserError(f"{stage}.distributed=fsdp cannot change the trainable set mid-run; use method full/freeze/lora with FSDP")
        import copy

        trained = distributed.wrap(copy.deepcopy(model).to(device), dist, "fsdp", precision)
        by_name = dict(trained.named_parameters())
        groups = [([(n, by_name[n]) for n, _ in named], scale) for named, scale in groups]
        net = trained
    else:
        if any(p.device != device for p in model.parameters()) and not getattr(model, "is_quantized", False):
            model.to(device)  # before DDP/compile wrap it: DDP registers its buckets on the parameters' device
        trained = model
        net = distributed.wrap(model, dist, cfg.distributed)
    if loss_fn_factory is not None:  # after the move and the wrap: the loss sees the parameters that train
        loss_fn = loss_fn_factory(trained)
    tracked = {n: p for named, _ in groups for n, p in named}  # every parameter that may change
    # fused AdamW: one kernel over all tensors instead of a Python loop per parameter; on small models
    # the optimizer step is a large share of a CPU step. Not for FSDP's DTensors.
    fused = not fsdp
    if cfg.optimizer == "paged_adamw_8bit":  # QLoRA's: 8-bit moments in paged (CPU-spillable) GPU memory
        import bitsandbytes

        optimizer = bitsandbytes.optim.PagedAdamW8bit(param_groups(groups, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=1e-8)
    else:
        optimizer = torch.optim.AdamW(param_groups(groups, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=1e-8, fused=fused)
    # autocast for the device the batch is on; under FSDP its MixedPrecisionPolicy already computes in half
    autocast = devices.autocast(device, precision if not fsdp else "fp32")
    scaler = devices.grad_scaler(device, precision)  # CUDA fp16 only: bf16 has fp32's exponent range
    if cfg.compile:
        net = torch.compile(net)

    # ---- resume: weights, optimizer, scaler, RNGs and the data position
    result = FitResult(micro_batch=micro, grad_accum=cfg.batch_size // dist.world // micro)
    queue: list[list[int]] = []
    best_state, best_value, best_step, bad_evals, nonfinite_run, start = None, None, None, 0, 0, 0
    saved = checkpoint.load_latest(checkpoint_dir) if (cfg.resume and checkpoint_dir) else None
    if saved is not None:
        # FSDP: each rank reads its shards from the DCP folder, resharded if the number of ranks changed
        checkpoint.load_weights(trained, optimizer, saved, fsdp, checkpoint_dir, tracked)
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        rng.setstate(saved["rng_python"])
        checkpoint.restore_rng(saved, device, dist.rank, dist.world)
        queue, start = saved["queue"], saved["step"]
        result = FitResult(**saved["result"])
        best_value, best_step, bad_evals = saved["best_value"], saved["best_step"], saved["bad_evals"]
        hooks.restore(cbs, saved.get("callbacks"))
        best_state = checkpoint.best_snapshot(checkpoint_dir, best_step, trained, tracked) if best_step is not None else None
        if unfreeze is not None:
            unfreeze.apply(start)
        if dist.is_main:
            console.print(f"          resumed from step {start} ({checkpoint_dir})")

    def snapshot() -> dict:
        """The best weights so far, on the CPU (a device copy would be memory the estimate cannot spare);
        under FSDP each rank keeps its own shards (no collective, 1/world of the memory)."""
        if device.type == "cpu" and not fsdp:
            return {n: p.detach().clone() for n, p in tracked.items()}
        return {n: checkpoint.local(p).detach().to("cpu", copy=True) for n, p in tracked.items()}

    def save(step: int) -> None:
        if checkpoint_dir is None:
            return
        # collectives first, on every rank: under FSDP each rank writes its shards of the weights and the
        # optimizer state (DCP, no gather); every rank's RNG states go to rank 0 (each draws its own dropout)
        if fsdp:
            tensors = {"format": "dcp", "shards": checkpoint.save_shards(checkpoint_dir, step, trained, optimizer, tracked)}
        else:
            weights, optim = checkpoint.full_state(tracked, optimizer)
            tensors = {"weights": weights, "optimizer": optim}
        rngs = distributed.gather_objects(devices.rng_state(device), dist)
        if not dist.is_main:
            return
        checkpoint.save_checkpoint(checkpoint_dir, step, {  # last: the .pt marks the checkpoint complete
            "step": step, **tensors, "fsdp_optimizer": fsdp,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng_python": rng.getstate(), "rng_torch": torch.get_rng_state(), "rng_ranks": rngs, "queue": queue,
            "result": asdict(result), "best_value": best_value, "best_step": best_step, "bad_evals": bad_evals,
            "config": cfg.model_dump(mode="json"), "callbacks": hooks.states(cbs),
        }, cfg.keep_checkpoints, best_step)

    mlflow = sys.modules.get("mlflow")  # per-step curves only when the runner has an MLflow run open
    log_curves = dist.is_main and mlflow is not None and mlflow.active_run() is not None
    t_start = time.perf_counter() - result.seconds  # a resumed run keeps counting its earlier seconds
    t_loop, tokens_at_start = time.perf_counter(), result.tokens
    log_line_every = max(1, total // 10) if not console.is_terminal else total + 1

    # ---- the loop
    with progress_bar(stage, total=total, unit="steps") as bar:
        bar.advance(start)
        for step in range(start, total):
            if unfreeze is not None and unfreeze.apply(step) and dist.active:
                net = distributed.wrap(model, dist, "ddp")  # DDP registers trainable params at wrap time
            if not queue:  # a new epoch: fresh bucketed order (identical on every rank: same seed)
                queue = bucketed_batches(train, cfg.batch_size, rng)
            global_batch = queue.pop()
            mine = global_batch[dist.rank :: dist.world]
            per_token = max(1, sum(predicted[i] for i in global_batch)) / dist.world
            micro_batches = [mine[i : i + micro] for i in range(0, len(mine), micro)]
            lr = lr_at(step, total, cfg.lr, cfg.schedule)
            for g in optimizer.param_groups:
                g["lr"] = lr * g["lr_scale"]

            net.train()
            loss_sum, finite = 0.0, True
            for k, idx in enumerate(micro_batches):
                batch = devices.to_device(task.batch(train, idx, pad_id), device)  # pinned, async on CUDA
                sync = k == len(micro_batches) - 1 or not dist.active
                weights = Weights(examples=len(idx) / len(mine), tokens=per_token)
                with distributed.gradient_sync(net, sync):  # FSDP decides in backward, so backward is inside
                    with autocast:
                        loss = (loss_fn or task.loss)(net, batch, weights)
                    finite &= bool(torch.isfinite(loss.detach()))
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                loss_sum += float(loss.detach())
                result.tokens += dist.world * int(batch["attention_mask"].sum() if "attention_mask" in batch  # images: examples
                                                  else batch["input_ids"].numel() if "input_ids" in batch else len(idx))

            if distributed.any_rank(not finite, dist):  # skip the step everywhere, count it, stop if it keeps happening
                optimizer.zero_grad(set_to_none=True)
                result.nonfinite_skipped += 1
                nonfinite_run += 1
                if nonfinite_run >= cfg.max_nonfinite:
                    raise NonFiniteLoss(
                        f"{stage}: the loss was NaN/inf for {nonfinite_run} steps in a row (step {step + 1}, lr {lr:.2e}); "
                        f"{result.nonfinite_skipped} skipped in all. Lower {stage}.lr, use precision=bf16 instead of fp16, "
                        f"or check the data for empty examples")
                bar.advance()
                continue
            nonfinite_run = 0
            optimizer_step(optimizer, scaler, tracked.values(), cfg.grad_clip)
            logged = hooks.step_end(cbs, step + 1, net, optimizer) if cbs else {}

            result.steps = step + 1
            result.history.append({"step": step + 1, "loss": round(loss_sum, 5), "lr": lr})
            bar.advance()
            if (step + 1) % cfg.log_every == 0 or (step + 1) % log_line_every == 0:
                elapsed = time.perf_counter() - t_loop
                tps = (result.tokens - tokens_at_start) / max(1e-9, elapsed)
                bar.note(f"loss {loss_sum:.3f}  lr {lr:.2e}  {tps:,.0f} tok/s")
                if (step + 1) % log_line_every == 0 and dist.is_main:  # no live bar (CI, a log file): a line per 10%
                    eta = elapsed / (step + 1 - start) * (total - step - 1)
                    console.print(f"          {stage} step {step + 1}/{total}  loss {loss_sum:.3f}  lr {lr:.2e}  "
                                  f"{tps:,.0f} tok/s  eta {eta:.0f}s")
                if log_curves:
                    mlflow.log_metrics({f"{stage}.step_loss": loss_sum, f"{stage}.lr": lr, f"{stage}.tokens_per_second": tps,
                                        **{f"{stage}.{k}": v for k, v in logged.items()}}, step=step + 1)

            if val is not None and ((step + 1) % eval_every == 0 or step + 1 == total):
                scores = task.validate(on_device(trained, device), val, pad_id)  # CPU floats
                result.evals.append({"step": step + 1, **{k: round(v, 5) for k, v in scores.items()}})
                if log_curves:
                    mlflow.log_metrics({f"{stage}.{k}": v for k, v in scores.items()}, step=step + 1)
                hooks.evaluated(cbs, step + 1, scores)
                value = scores[select]
                if best_value is None or (value > best_value if higher_is_better else value < best_value):
                    best_value, best_step, bad_evals, best_state = value, step + 1, 0, snapshot()
                    result.best = result.evals[-1]
                else:
                    bad_evals += 1
                result.seconds = time.perf_counter() - t_start
                save(step + 1)
                if cfg.early_stopping and bad_evals >= cfg.early_stopping:
                    result.stopped_early = True
                    if dist.is_main:
                        console.print(f"          early stop at step {step + 1}: {bad_evals} evaluations without a better {select}")
                    break
            elif cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                result.seconds = time.perf_counter() - t_start
                save(step + 1)

    result.seconds = time.perf_counter() - t_start
    if best_state is not None:
        checkpoint.load_snapshot(trained, tracked, best_state)
    if fsdp:  # every rank gathers the whole weights into its plain `model` (pretrain fits it again; rank 0 saves it)
        checkpoint.gather_into(model, trained, device)
    distributed.barrier(dist)
    if dist.is_main:
        best_text = f"best {select} {best_value:.4f} at step {best_step}; " if best_value is not None else ""
        skipped = f"; {result.nonfinite_skipped} non-finite steps skipped" if result.nonfinite_skipped else ""
        console.print(f"          {best_text}{result.tokens_per_second:,.0f} tokens/s{skipped}")
    return result
