"""Config of the compress stage: which variants to build and the gates each must pass."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainforge.section import Section


class GatesConfig(Section):
    """Budgets a compressed variant must meet to become the deploy candidate."""

    max_metric_drop: float = 0.01
    """Largest allowed fall of the metric versus the original (0.01 = one accuracy point)."""
    min_speedup_b32: float | None = 1.5
    """Smallest allowed p50 speedup at batch 32 versus the original; null: no speed gate."""
    min_speedup_b1: float | None = None
    """Smallest allowed p50 speedup at batch 1 (one request at a time) versus the original; null: no gate
    (the verdict still names every batch size where a variant is slower than the original)."""
    max_size_mb: float | None = None
    """Largest allowed size on disk of the variant's weights file(s), in MB; null: no size gate."""


class StructuredConfig(Section):
    """Remove whole attention heads and FFN neurons, ranked by first-order (Taylor) importance."""

    fraction: float = Field(0.3, gt=0.0, lt=1.0)
    """Share of attention heads and of FFN neurons removed in every layer."""
    importance_batches: int = 8
    """Training batches whose gradients score the heads and neurons (more: steadier ranking)."""
    recovery_steps: int = 200
    """Optimiser steps of fine-tuning after pruning to win back accuracy; 0 skips recovery."""
    recovery_lr: float = 3.0e-4
    """Peak learning rate of the recovery fine-tune."""


class DistillConfig(Section):
    """Train a smaller student on the teacher's softened logits (Hinton et al., 2015)."""

    student_layers: int | None = None
    """Transformer layers of the student, initialised from evenly spaced teacher layers; null: half."""
    init_from_teacher: bool = True
    """Start the student from the teacher's embeddings, head and evenly spaced layers; false: random init."""
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    """Weight of the distillation (KL) loss; 1 - alpha weighs cross-entropy on the labels."""
    temperature: float = Field(2.0, gt=0.0)
    """Softmax temperature of both logits; the KL term is scaled by T² to keep its gradient size."""
    hidden_loss_weight: float = 0.0
    """Weight of an MSE loss between student and matched teacher hidden states; 0 disables it."""
    epochs: float = 2.0
    """Passes over the training split."""
    max_steps: int | None = None
    """Stop after this many steps; overrides epochs when set."""
    batch_size: int = 32
    """Examples per optimiser step."""
    lr: float = 5.0e-4
    """Peak learning rate (linear warmup, cosine decay)."""


class CompressConfig(Section):
    """Build smaller/faster variants of model/, measure each against it, keep only those passing the gates."""

    int8: bool = True
    """Dynamic INT8 quantisation of every linear layer (int8 weights, activations quantised per batch)."""
    int8_kernel: Literal["auto", "fbgemm", "onednn"] = "auto"
    """Kernel library the dynamic INT8 weights are packed for; auto times each on a few test batches and keeps the faster."""
    weight_only_int8: bool | Literal["auto"] = "auto"
    """Int8 weights, float activations (for memory-bound causal LMs); auto: only for decoder models."""
    magnitude_sparsity: float | None = Field(None, ge=0.0, lt=1.0)
    """Global magnitude pruning of linear weights to this sparsity, masks folded in; null: skip."""
    structured: StructuredConfig | None = None
    """Structured pruning of heads and FFN neurons; null: skip."""
    distill: DistillConfig | None = None
    """Knowledge distillation into a smaller student; null: skip."""
    gates: GatesConfig = GatesConfig()
    """What every variant must meet."""
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    """The metric compared against the original on the test split."""
    split: Literal["test", "val"] = "test"
    """Held-out split every variant is scored on."""
    threads: int = 1
    """torch threads while timing; 1 keeps latencies comparable on a shared machine."""
    latency_batches: int = 8
    """Batches of 32 (and 2x as many single examples) timed 3 times per model, round-robin with the others."""
    onnx: bool = True
    """Export the original model to ONNX and check onnxruntime's logits against PyTorch's."""
    onnx_tolerance: float = 1.0e-4
    """Largest allowed absolute logit difference between onnxruntime and PyTorch."""
