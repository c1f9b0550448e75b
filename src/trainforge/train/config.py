"""Config of the train stage: tokenizer, model, method and the optimisation recipe."""

from __future__ import annotations

from typing import Literal

from trainforge.section import Section


class TokenizerConfig(Section):
    kind: Literal["bpe", "pretrained"] = "bpe"
    """bpe: train a byte-level BPE on the training split; pretrained: use the model directory's."""
    vocab_size: int = 8000
    """BPE vocabulary size; larger covers more whole words, costs embedding memory."""
    min_frequency: int = 2
    """A merge must occur this often in the corpus to enter the vocabulary."""


class ScheduleConfig(Section):
    warmup_ratio: float = 0.05
    """Share of steps spent ramping the learning rate linearly from 0."""
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    """Shape of the learning rate after warmup."""
    min_lr_ratio: float = 0.0
    """Floor of the decay, as a share of the peak learning rate."""


class TrainConfig(Section):
    """Fine-tune a model for the task; writes model/ and tokenizer/ in Hugging Face format."""

    task: Literal["classification"] = "classification"
    """What the model predicts."""
    method: Literal["full"] = "full"
    """full: every parameter trains."""
    model: str = "encoder-tiny"
    """A preset name (`trainforge models list`) or a local Hugging Face model directory."""
    tokenizer: TokenizerConfig = TokenizerConfig()
    """Tokenizer to train or reuse."""
    max_length: int = 128
    """Tokens per example; longer ones are truncated."""
    epochs: float = 3.0
    """Passes over the training split (fractions allowed)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps; overrides epochs when set."""
    batch_size: int = 32
    """Examples per optimiser step."""
    lr: float = 5.0e-4
    """Peak learning rate."""
    weight_decay: float = 0.01
    """AdamW decay on matrices (never on biases, norms or embeddings' norms)."""
    dropout: float = 0.1
    """Dropout in the model; 0 for pretraining, 0.1+ for fine-tuning small data."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 disables."""
    schedule: ScheduleConfig = ScheduleConfig()
    """Learning-rate schedule."""
    eval_every: int | None = None
    """Evaluate on val every N steps; null evaluates once per epoch."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Autocast dtype; bf16 halves activation memory where the hardware supports it."""
    threads: int | None = None
    """torch intra-op threads; null uses every core."""
