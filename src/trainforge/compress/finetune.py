"""A few optimiser steps on the training split: pruning recovery and distillation share it.

Deliberately small and local (not train.loop.fit): compression only needs "N steps of AdamW with
warmup + cosine on length-bucketed batches, this loss", and keeping it here means the train
stage's loop can grow (checkpoints, DDP, LoRA groups) without changing what a compression run does.
"""

from __future__ import annotations

import random
from typing import Callable

import torch
from torch import nn

from trainforge.console import progress_bar
from trainforge.train.config import ScheduleConfig
from trainforge.batching import Encoded, bucketed_batches, collate, model_device
from trainforge.train.loop import lr_at

# loss_fn(model, batch) → scalar loss; batch has input_ids, attention_mask (B, T) and labels (B,)
LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def cross_entropy_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


def train_steps(model: nn.Module, train: Encoded, steps: int, lr: float, batch_size: int, pad_id: int, seed: int,
                loss_fn: LossFn = cross_entropy_loss, description: str = "finetune") -> float:
    """Train `model` in place, on the device it is on, for `steps` steps; returns the last loss."""
    from trainforge.device import to_device

    torch.manual_seed(seed)
    device = model_device(model)
    rng = random.Random(seed)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    schedule = ScheduleConfig(warmup_ratio=0.06, decay="cosine")
    queue: list[list[int]] = []
    last = float("nan")
    model.train()
    with progress_bar(description, total=steps, unit="steps") as bar:
        for step in range(steps):
            if not queue:
                queue = bucketed_batches(train, batch_size, rng)
            batch = to_device(collate(train, queue.pop(), pad_id), device)
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, steps, lr, schedule)
            loss = loss_fn(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            last = loss.item()
            bar.advance()
            if (step + 1) % 10 == 0:
                bar.note(f"loss {last:.3f}")
    model.eval()
    return last
