"""Training memory on the training device, estimated before the first step.

    weights      4 B × trainable parameters (fp32 masters, also under bf16/fp16 autocast)
                 + 2 B × trainable under autocast (the half copies autocast caches during a forward)
                 + each frozen parameter at its own dtype (a LoRA base loaded in bf16: 2 B)
    gradients    4 B × trainable parameters
    optimizer    8 B × trainable parameters (AdamW: two fp32 moments)
                 — under FSDP these three are ÷ world size (each rank holds its shard; the
                   all-gathered blocks of one forward are transient and not counted)
    activations  per block ≈ B·T·H·(34 + 5·heads·T/H) bytes at 16 bits (Korthikanti et al. 2022),
                 the MLP's 19 of the 34 scaled, in a mixture-of-experts block, to its *active* parameters
                 per token (models/moe.py; weights, gradients and optimizer count *all* parameters),
                 ×2 in fp32, plus the logits B·T·V×4 B ×3 (logits, softmax, its gradient) for an LM head;
                 with gradient checkpointing only each block's input B·T·H is kept, plus one block's
                 activations while it is recomputed
    snapshot     the best weights so far (4 B × trainable, ÷ world under FSDP), kept in HOST memory:
                 counted against the limit only when the device is the CPU (then it is the same memory)

The limit is what the device has free (trainforge.device.available_memory: cudaMemGetInfo on a
GPU, MemAvailable on the host) × 0.8, or train.memory_limit_gb. When the total exceeds it the
micro-batch halves and gradient accumulation doubles (same examples per optimiser step) until it fits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    snapshot: int = 0
    """Host bytes of the best-weights copy; part of `total` only when `snapshot_on_device`."""
    snapshot_on_device: bool = False

    @property
    def total(self) -> int:
        """Bytes on the training device."""
        return (self.weights + self.gradients + self.optimizer + self.activations
                + (self.snapshot if self.snapshot_on_device else 0))

    def describe(self) -> str:
        gb = 1 << 30
        text = (f"weights {self.weights / gb:.2f} + grads {self.gradients / gb:.2f} + optimizer {self.optimizer / gb:.2f} "
                f"+ activations {self.activations / gb:.2f}")
        if self.snapshot and self.snapshot_on_device:
            text += f" + best-weights copy {self.snapshot / gb:.2f}"
        text += f" = {self.total / gb:.2f} GiB"
        if self.snapshot and not self.snapshot_on_device:
            text += f" (+ best-weights copy {self.snapshot / gb:.2f} GiB in host memory)"
        return text


def estimate(model, micro_batch: int, seq_len: int, precision: str, lm_head: bool, *, shards: int = 1,
             checkpointing: bool = False, snapshot: bool = False, on_cpu: bool = True) -> MemoryEstimate:
    """shards: the FSDP world size (1 for one process or DDP); snapshot: a best-weights copy is kept
    (there is a validation set); on_cpu: the device is the host, so that copy competes for the same memory."""
    params = list({id(p): p for p in model.parameters()}.values())
    n_train = sum(p.numel() for p in params if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in params if not p.requires_grad)
    half = precision in ("bf16", "fp16")
    cfg = getattr(model, "config", None)
    hidden = getattr(cfg, "hidden_size", 256)
    layers = getattr(cfg, "num_hidden_layers", 4)
    heads = getattr(cfg, "num_attention_heads", 4)
    vocab = getattr(cfg, "vocab_size", 0)
    bytes_per = 2 if half else 4
    b, t = micro_batch, seq_len
    from trainforge.models.moe import mlp_activation_scales

    per_blocks = [b * t * hidden * (15 + 19 * s + 5 * heads * t / hidden) * bytes_per / 2
                  for s in mlp_activation_scales(model, hidden, layers)]  # 15 + 19 = 34 for a dense block
    blocks = (layers * b * t * hidden * bytes_per + max(per_blocks)) if checkpointing else sum(per_blocks)
    logits = b * t * vocab * 4 * 3 if lm_head else 0
    weights = (4 + (2 if half else 0)) * n_train + frozen
    return MemoryEstimate(weights // shards, 4 * n_train // shards, 8 * n_train // shards, int(blocks + logits),
                          snapshot=4 * n_train // shards if snapshot else 0, snapshot_on_device=on_cpu)


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); elsewhere a generous 16 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 16 << 30


def fit_micro_batch(model, micro_batch: int, seq_len: int, precision: str, lm_head: bool, limit: int,
                    **kw) -> tuple[int, MemoryEstimate]:
    """Halve the micro-batch until the estimate fits `limit` bytes (or it is 1). kw: see `estimate`."""
    est = estimate(model, micro_batch, seq_len, precision, lm_head, **kw)
    while est.total > limit and micro_batch > 1 and micro_batch % 2 == 0:
        micro_batch //= 2
        est = estimate(model, micro_batch, seq_len, precision, lm_head, **kw)
    return micro_batch, est
