"""The DPO recipe's loop, in one file beside the supervised one (train/loop.py), reading top to bottom.

    setup: device, precision, ranks; memory estimate (→ micro-batch of pairs); the reference log-probs, once,
           BEFORE training: every pair scored by the reference (the model as it is now) and stored, so while
           training only the policy is in memory (or, with precompute_reference=false, a frozen copy beside it)
    for each step:
        lr_at(step) → micro-batches of pairs: one forward over chosen + rejected rows, loss, backward
        → non-finite? skip and count → clip, step → log TRL's metrics → evaluate on val pairs → checkpoint
    end: the last step's weights (DPO has no "best" that a held-out preference loss picks reliably)

Shared with the supervised loop, not copied: the schedule (`lr_at`), the AdamW groups (`param_groups`),
checkpoints (train/checkpoint.py: atomic, last K), RNG capture, DDP (train/distributed.py) and the memory
estimate (train/memory.py). What differs: the batch is pairs, the loss needs reference log-probs, and the
order is a plain shuffle per epoch (pairs of one prompt stay apart: no length bucketing).

Resume: a checkpoint holds the weights, the optimizer, the python and torch RNGs, the epoch's remaining batches
and the history; the reference log-probs stay in their own file, keyed by the pairs' token ids and the reference
weights' hash, and are reused (after a step the policy is no longer the reference, so they cannot be recomputed).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainforge import device as devices
from trainforge.console import console, progress_bar
from trainforge.errors import UserError
from trainforge.posttrain.dpo import REFERENCE_FREE, LossSettings, pair_batch, pair_loss, sequence_logps
from trainforge.posttrain.preference import EncodedPairs
from trainforge.train import checkpoint, distributed, memory
from trainforge.train.config import LoopConfig
from trainforge.train.loop import NonFiniteLoss, lr_at, optimizer_step, param_groups

REFERENCE_FILE = "reference_logps.pt"
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


@dataclass
class DPOResult:
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    reference_seconds: float = 0.0
    nonfinite_skipped: int = 0
    micro_batch: int = 0
    grad_accum: int = 1

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def disable_dropout(model: torch.nn.Module) -> None:
    """As TRL does by default: dropout would make the policy differ from the reference before any step, and
    the two forwards of one pair see different masks."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "attention_dropout", None), float):
            m.attention_dropout = 0.0


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every weight's bytes: stored reference log-probs belong to exactly this reference."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def batch_of(pairs: EncodedPairs, idx: list[int], pad_id: int) -> dict:
    return pair_batch([pairs.prompt[i] for i in idx], [pairs.chosen[i] for i in idx], [pairs.rejected[i] for i in idx], pad_id)


def score_pairs(model: torch.nn.Module, pairs: EncodedPairs, pad_id: int, batch_size: int, device, precision: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed answer log-probs of every pair under `model`, in eval mode, fp64 on the CPU."""
    was = model.training
    model.eval()
    chosen, rejected = [], []
    with torch.no_grad(), devices.autocast(device, precision):
        for start in range(0, len(pairs), batch_size):
            idx = list(range(start, min(len(pairs), start + batch_size)))
            out = sequence_logps(model, devices.to_device(batch_of(pairs, idx, pad_id), device))
            c, r = out.answer.double().cpu().chunk(2)
            chosen.append(c)
            rejected.append(r)
    model.train(was)
    return torch.cat(chosen), torch.cat(rejected)


def reference_logps(model: torch.nn.Module, splits: dict[str, EncodedPairs], path: Path | None, pad_id: int,
                    batch_size: int, device, precision: str, resume: bool) -> tuple[dict[str, tuple], float]:
    """{split: (chosen, rejected)} reference log-probs: read from `path` when it was written for these pairs and
    this reference, else computed now (before any step) and written atomically. Returns (them, seconds spent)."""
    key = {"pairs": {s: p.fingerprint() for s, p in splits.items()}, "reference": model_fingerprint(model),
           "precision": precision}
    if path is not None and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved.get("key") == key:
            return saved["logps"], 0.0
        if resume:
            raise UserError(f"{path}: the stored reference log-probs belong to other pairs or another reference model "
                            f"than this run's; the policy has already moved, so they cannot be recomputed. Start "
                            f"without --resume (or delete {path.parent})")
    t0 = time.perf_counter()
    logps = {s: score_pairs(model, p, pad_id, batch_size, device, precision) for s, p in splits.items()}
    seconds = time.perf_counter() - t0
    if path is not None and distributed.init().is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        with open(tmp, "wb") as f:
            torch.save({"key": key, "logps": logps}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return logps, seconds


def epoch_batches(n: int, batch_size: int, rng: random.Random) -> list[list[int]]:
    """A fresh shuffled epoch as a stack of global batches (pop() takes the next one)."""
    order = list(range(n))
    rng.shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)][::-1]


def fit_dpo(model: torch.nn.Module, train: EncodedPairs, val: EncodedPairs | None, cfg: LoopConfig, loss: LossSettings,
            pad_id: int, seed: int, *, groups=None, checkpoint_dir: Path | None = None, reference: dict | None = None,
            ref_model: torch.nn.Module | None = None, device=None, stage: str = "dpo") -> DPOResult:
    """Train `model` (the policy) in place on preference pairs; at the end it holds the last step's weights.

    reference: {"train": (chosen, rejected), "val": …} from `reference_logps` (precomputed), or ref_model: a frozen
    reference scored each step (kept loaded); neither for simpo / orpo. groups: [(named params, lr scale)] from
    train/methods.py (default: every trainable parameter)."""
    # ---- setup
    device = device or next(model.parameters()).device
    precision = devices.resolve_precision(cfg.precision, device, f"{stage}.precision")
    dist = distributed.init(cfg.dist_timeout_minutes, device)
    if dist.active and cfg.distributed == "fsdp":
        raise UserError("train.task=dpo runs under DDP; set train.distributed: ddp (FSDP is not wired into this recipe yet)")
    needs_reference = loss.kind not in REFERENCE_FREE
    if needs_reference and (reference is None) == (ref_model is None):
        raise ValueError("fit_dpo: give exactly one of reference (precomputed log-probs) or ref_model")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.max_steps or max(1, int(round(cfg.epochs * steps_per_epoch)))
    eval_every = cfg.eval_every or steps_per_epoch

    micro = cfg.batch_size // cfg.grad_accum // dist.world
    if micro < 1:
        raise UserError(f"{stage}.batch_size={cfg.batch_size} is smaller than grad_accum × ranks = {cfg.grad_accum * dist.world}")
    seq_len = max(len(p) + max(len(c), len(r)) for p, c, r in zip(train.prompt[:1000], train.chosen, train.rejected))
    limit = int((cfg.memory_limit_gb * (1 << 30)) if cfg.memory_limit_gb else 0.8 * devices.available_memory(device))
    # a pair is two rows (chosen, rejected) through the LM head; a loaded reference adds its weights, no gradients
    rows, est = memory.fit_micro_batch(model, 2 * micro, seq_len, precision, True, limit, on_cpu=device.type == "cpu")
    micro = max(1, rows // 2)
    if dist.is_main:
        extra = (f" + reference model {sum(p.numel() * p.element_size() for p in ref_model.parameters()) / (1 << 30):.2f} GiB"
                 if ref_model is not None else "")
        console.print(f"          {stage}: {len(train):,} pairs, loss {loss.kind} (β {loss.beta:g}); memory estimate at "
                      f"micro-batch {micro} pairs × {seq_len} tokens: {est.describe()}{extra}")

    if groups is None:
        groups = [([(n, p) for n, p in model.named_parameters() if p.requires_grad], 1.0)]
    disable_dropout(model)
    model.to(device)
    if ref_model is not None:
        ref_model.to(device).eval().requires_grad_(False)
    net = distributed.wrap(model, dist, "ddp")
    tracked = {n: p for named, _ in groups for n, p in named}
    optimizer = torch.optim.AdamW(param_groups(groups, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=1e-8, fused=True)
    autocast = devices.autocast(device, precision)
    scaler = devices.grad_scaler(device, precision)

    # ---- resume: weights, optimizer, scaler, RNGs and the epoch's remaining batches
    result = DPOResult(micro_batch=micro, grad_accum=max(1, cfg.batch_size // dist.world // micro))
    queue: list[list[int]] = []
    start, nonfinite_run = 0, 0
    saved = checkpoint.load_latest(checkpoint_dir) if (cfg.resume and checkpoint_dir) else None
    if saved is not None:
        checkpoint.load_weights(model, optimizer, saved, False, checkpoint_dir, tracked)
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        rng.setstate(saved["rng_python"])
        checkpoint.restore_rng(saved, device, dist.rank, dist.world)
        queue, start, result = saved["queue"], saved["step"], DPOResult(**saved["result"])
        if dist.is_main:
            console.print(f"          resumed from step {start} ({checkpoint_dir})")

    def save(step: int) -> None:
        if checkpoint_dir is None:
            return
        weights, optim = checkpoint.full_state(tracked, optimizer)
        rngs = distributed.gather_objects(devices.rng_state(device), dist)
        if dist.is_main:
            checkpoint.save_checkpoint(checkpoint_dir, step, {
                "step": step, "weights": weights, "optimizer": optim, "fsdp_optimizer": False,
                "scaler": scaler.state_dict() if scaler is not None else None, "rng_python": rng.getstate(),
                "rng_torch": torch.get_rng_state(), "rng_ranks": rngs, "queue": queue, "result": asdict(result),
                "config": cfg.model_dump(mode="json")}, cfg.keep_checkpoints, None)

    def losses_on(pairs: EncodedPairs, idx: list[int], split: str, module) -> tuple[torch.Tensor, dict, int]:
        batch = devices.to_device(batch_of(pairs, idx, pad_id), device)
        out = sequence_logps(module, batch)
        ref_c = ref_r = None
        if needs_reference and reference is not None:
            c, r = reference[split]
            ref_c, ref_r = c[idx].to(device, out.answer.dtype), r[idx].to(device, out.answer.dtype)
        elif needs_reference:
            with torch.no_grad():
                ref = sequence_logps(ref_model, batch)
            ref_c, ref_r = (t.to(out.answer.dtype) for t in ref.answer.chunk(2))
        per_pair, metrics = pair_loss(loss, out, ref_c, ref_r)
        return per_pair, metrics, int(batch["attention_mask"].sum())

    def validate() -> dict[str, float]:
        model.eval()
        sums = {k: 0.0 for k in ("loss", *METRICS)}
        with torch.no_grad(), autocast:
            for s in range(0, len(val), max(1, micro)):
                idx = list(range(s, min(len(val), s + max(1, micro))))
                per_pair, metrics, _ = losses_on(val, idx, "val", model)
                sums["loss"] += float(per_pair.sum())
                for k in METRICS:
                    sums[k] += float(metrics[k].sum())
        model.train()
        return {f"val_{k}": v / max(1, len(val)) for k, v in sums.items()}

    mlflow = sys.modules.get("mlflow")  # per-step curves only when the runner has an MLflow run open
    log_curves = dist.is_main and mlflow is not None and mlflow.active_run() is not None
    t_start = time.perf_counter() - result.seconds
    log_line_every = max(1, total // 10) if not console.is_terminal else total + 1

    # ---- the loop
    with progress_bar(stage, total=total, unit="steps") as bar:
        bar.advance(start)
        for step in range(start, total):
            if not queue:  # a new epoch: a fresh shuffle (identical on every rank: same seed)
                queue = epoch_batches(len(train), cfg.batch_size, rng)
            global_batch = queue.pop()
            mine = global_batch[dist.rank :: dist.world]
            micro_batches = [mine[i : i + micro] for i in range(0, len(mine), micro)]
            lr = lr_at(step, total, cfg.lr, cfg.schedule)
            for g in optimizer.param_groups:
                g["lr"] = lr * g["lr_scale"]

            net.train()
            loss_sum, finite, sums = 0.0, True, {k: 0.0 for k in METRICS}
            for k, idx in enumerate(micro_batches):
                with distributed.gradient_sync(net, k == len(micro_batches) - 1 or not dist.active):
                    with autocast:
                        per_pair, metrics, tokens = losses_on(train, idx, "train", net)
                        step_loss = per_pair.mean() * (len(idx) / len(mine))  # this micro-batch's share of the mean
                    finite &= bool(torch.isfinite(step_loss.detach()))
                    (scaler.scale(step_loss) if scaler is not None else step_loss).backward()
                loss_sum += float(step_loss.detach())
                for name in METRICS:
                    sums[name] += float(metrics[name].sum())
                result.tokens += tokens * dist.world

            if distributed.any_rank(not finite, dist):
                optimizer.zero_grad(set_to_none=True)
                result.nonfinite_skipped += 1
                nonfinite_run += 1
                if nonfinite_run >= cfg.max_nonfinite:
                    raise NonFiniteLoss(f"{stage}: the loss was NaN/inf for {nonfinite_run} steps in a row (step {step + 1}); "
                                        f"lower train.lr or train.dpo.beta")
                bar.advance()
                continue
            nonfinite_run = 0
            optimizer_step(optimizer, scaler, tracked.values(), cfg.grad_clip)

            n_pairs = len(global_batch)
            logged = {name: distributed.sum_over_ranks(v, dist) / n_pairs for name, v in sums.items()}
            logged["loss"] = distributed.sum_over_ranks(loss_sum, dist) / dist.world
            result.steps = step + 1
            result.history.append({"step": step + 1, "lr": lr, **{k: round(v, 6) for k, v in logged.items()}})
            bar.advance()
            if (step + 1) % cfg.log_every == 0 or (step + 1) % log_line_every == 0:
                note = (f"loss {logged['loss']:.4f}  margin {logged['rewards/margins']:+.3f}  "
                        f"acc {logged['rewards/accuracies']:.2f}  lr {lr:.2e}")
                bar.note(note)
                if (step + 1) % log_line_every == 0 and dist.is_main:
                    console.print(f"          {stage} step {step + 1}/{total}  {note}")
                if log_curves:  # TRL's names, so a DPO run reads the same on any dashboard
                    mlflow.log_metrics({f"{stage}.loss": logged["loss"], f"{stage}.lr": lr,
                                        **{k: logged[k] for k in METRICS}}, step=step + 1)

            if val is not None and len(val) and ((step + 1) % eval_every == 0 or step + 1 == total):
                scores = validate()
                result.evals.append({"step": step + 1, **{k: round(v, 6) for k, v in scores.items()}})
                if log_curves:
                    mlflow.log_metrics({f"{stage}.{k}": v for k, v in scores.items()}, step=step + 1)
                result.seconds = time.perf_counter() - t_start
                save(step + 1)
            elif cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                result.seconds = time.perf_counter() - t_start
                save(step + 1)

    result.seconds = time.perf_counter() - t_start
    distributed.barrier(dist)
    if dist.is_main and result.history:
        last = result.history[-1]
        console.print(f"          {stage}: final loss {last['loss']:.4f}, rewards/margins {last['rewards/margins']:+.4f}, "
                      f"rewards/accuracies {last['rewards/accuracies']:.3f}")
    return result
