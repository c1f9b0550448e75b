"""Batches, shared by every stage that runs a model over examples (train, eval, compress, serve tools).

An `Encoded` holds each example's token ids without padding; `collate` pads the chosen examples into
one batch. Training draws length-bucketed batches ("smart batching"): shuffle, cut into pools of 50
batches, sort each pool by length, then shuffle the batches, so padding drops to a few percent while
every epoch still sees the data in a new random order. Prediction walks the examples sorted by length.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass
class Encoded:
    """Token ids per example (no padding yet) and integer labels (classification),
    or per-token targets (`token_labels`, -100 = no loss) for causal LMs."""

    input_ids: list[list[int]]
    labels: list[int]
    token_labels: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def collate(enc: Encoded, idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    longest = max(len(enc.input_ids[i]) for i in idx)
    ids = torch.full((len(idx), longest), pad_id, dtype=torch.long)  # B, T
    mask = torch.zeros((len(idx), longest), dtype=torch.long)
    targets = torch.full((len(idx), longest), -100, dtype=torch.long) if enc.token_labels is not None else None
    for row, i in enumerate(idx):
        seq = enc.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        if targets is not None:
            targets[row, : len(seq)] = torch.tensor(enc.token_labels[i])
    labels = targets if targets is not None else torch.tensor([enc.labels[i] for i in idx])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


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


def model_device(model: torch.nn.Module) -> torch.device:
    """Where `model` runs: its first parameter's device (the CPU for a model with none)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(model: torch.nn.Module, enc: Encoded, batch_size: int, pad_id: int) -> torch.Tensor:
    """Logits in the original example order, shape (N, num_labels), in a CPU float buffer whatever
    device the model is on (each batch goes to the model's device; on the CPU nothing is copied)."""
    from trainforge.device import to_device

    model.eval()
    device = model_device(model)
    out = torch.empty((len(enc), model.config.num_labels))
    for idx in eval_batches(enc, batch_size):
        batch = to_device(collate(enc, idx, pad_id), device)
        out[idx] = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().cpu()
    return out
