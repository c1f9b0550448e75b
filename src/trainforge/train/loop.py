"""The training loop, in one file that reads top to bottom.

    setup → batches → lr_at(step) → for each step: forward, backward, clip, step → evaluate → keep best

Batches are length-bucketed ("smart batching"): shuffle, cut into pools of 50 batches, sort each
pool by length, then shuffle the batches. Padding drops to a few percent and tokens/s rises,
while every epoch still sees the data in a new random order.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field

import torch

from trainforge.console import console, progress_bar
from trainforge.train.config import ScheduleConfig, TrainConfig


# --------------------------------------------------------------------------- schedule


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


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices only; never on biases, norms or 1-d parameters."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------- data


@dataclass
class Encoded:
    """Token ids per example (no padding yet) and integer labels."""

    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def collate(enc: Encoded, idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    longest = max(len(enc.input_ids[i]) for i in idx)
    ids = torch.full((len(idx), longest), pad_id, dtype=torch.long)  # B, T
    mask = torch.zeros((len(idx), longest), dtype=torch.long)
    for row, i in enumerate(idx):
        seq = enc.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([enc.labels[i] for i in idx])}


def bucketed_batches(enc: Encoded, batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    order = list(range(len(enc)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = sorted(order[start : start + batch_size * pool], key=lambda i: len(enc.input_ids[i]))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def eval_batches(enc: Encoded, batch_size: int) -> list[list[int]]:
    order = sorted(range(len(enc)), key=lambda i: len(enc.input_ids[i]))
    return [order[j : j + batch_size] for j in range(0, len(order), batch_size)]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, enc: Encoded, batch_size: int, pad_id: int) -> torch.Tensor:
    """Logits in the original example order, shape (N, num_labels)."""
    model.eval()
    out = torch.empty((len(enc), model.config.num_labels))
    for idx in eval_batches(enc, batch_size):
        batch = collate(enc, idx, pad_id)
        out[idx] = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    return out


# --------------------------------------------------------------------------- the loop


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def fit(model: torch.nn.Module, train: Encoded, val: Encoded, cfg: TrainConfig, pad_id: int, seed: int) -> FitResult:
    """Train `model` in place; at the end it holds the weights that scored best on val."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.max_steps or max(1, int(round(cfg.epochs * steps_per_epoch)))
    eval_every = cfg.eval_every or steps_per_epoch
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.precision == "bf16" else torch.autocast("cpu", enabled=False)
    result = FitResult()
    best_state, best_acc = None, -1.0
    queue: list[list[int]] = []
    t_start = time.perf_counter()

    with progress_bar("train", total=total, unit="steps") as bar:
        for step in range(total):
            if not queue:  # a new epoch: fresh bucketed order
                queue = bucketed_batches(train, cfg.batch_size, rng)
            batch = collate(train, queue.pop(), pad_id)
            lr = lr_at(step, total, cfg.lr, cfg.schedule)
            for g in optimizer.param_groups:
                g["lr"] = lr

            model.train()
            with autocast:
                loss = model(**batch).loss
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            result.steps = step + 1
            result.tokens += int(batch["attention_mask"].sum())
            loss_value = loss.item()
            result.history.append({"step": step + 1, "loss": round(loss_value, 5), "lr": lr})
            bar.advance()
            if (step + 1) % 10 == 0:
                elapsed = time.perf_counter() - t_start
                bar.note(f"loss {loss_value:.3f}  lr {lr:.2e}  {result.tokens / elapsed:,.0f} tok/s")

            if (step + 1) % eval_every == 0 or step + 1 == total:
                logits = predict_logits(model, val, 128, pad_id)
                labels = torch.tensor(val.labels)
                val_loss = float(torch.nn.functional.cross_entropy(logits, labels))
                val_acc = float((logits.argmax(-1) == labels).float().mean())
                result.evals.append({"step": step + 1, "val_loss": round(val_loss, 5), "val_accuracy": round(val_acc, 5)})
                if val_acc > best_acc:
                    best_acc, best_state = val_acc, copy.deepcopy(model.state_dict())
                    result.best = result.evals[-1]

    result.seconds = time.perf_counter() - t_start
    if best_state is not None:
        model.load_state_dict(best_state)
    console.print(
        f"          best val accuracy {result.best.get('val_accuracy', float('nan')):.4f} at step {result.best.get('step')}; "
        f"{result.tokens_per_second:,.0f} tokens/s"
    )
    return result
