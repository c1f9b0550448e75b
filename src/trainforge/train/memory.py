"""Training memory, estimated before the first step: weights, gradients, optimizer states, activations.

    weights      4 B × all parameters (fp32 master copy)
    gradients    4 B × trainable parameters
    optimizer    8 B × trainable parameters (AdamW: two moments)
    activations  per block ≈ B·T·H·(34 + 5·heads·T/H) bytes at 16 bits (Korthikanti et al. 2022),
                 ×2 in fp32, plus the logits B·T·V×4 B ×3 (logits, softmax, its gradient) for an LM head

When the total exceeds what the machine has, the micro-batch halves and gradient accumulation
doubles (same examples per optimiser step) until it fits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        gb = 1 << 30
        return (f"weights {self.weights / gb:.2f} + grads {self.gradients / gb:.2f} + optimizer {self.optimizer / gb:.2f} "
                f"+ activations {self.activations / gb:.2f} = {self.total / gb:.2f} GiB")


def estimate(model, micro_batch: int, seq_len: int, precision: str, lm_head: bool) -> MemoryEstimate:
    params = {id(p): p for p in model.parameters()}.values()
    n_all = sum(p.numel() for p in params)
    n_train = sum(p.numel() for p in params if p.requires_grad)
    cfg = getattr(model, "config", None)
    hidden = getattr(cfg, "hidden_size", 256)
    layers = getattr(cfg, "num_hidden_layers", 4)
    heads = getattr(cfg, "num_attention_heads", 4)
    vocab = getattr(cfg, "vocab_size", 0)
    bytes_per = 2 if precision in ("bf16", "fp16") else 4
    b, t = micro_batch, seq_len
    per_block = b * t * hidden * (34 + 5 * heads * t / hidden) * bytes_per / 2
    logits = b * t * vocab * 4 * 3 if lm_head else 0
    return MemoryEstimate(4 * n_all, 4 * n_train, 8 * n_train, int(per_block * layers + logits))


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


def fit_micro_batch(model, micro_batch: int, seq_len: int, precision: str, lm_head: bool, limit: int) -> tuple[int, MemoryEstimate]:
    """Halve the micro-batch until the estimate fits `limit` bytes (or it is 1)."""
    est = estimate(model, micro_batch, seq_len, precision, lm_head)
    while est.total > limit and micro_batch > 1 and micro_batch % 2 == 0:
        micro_batch //= 2
        est = estimate(model, micro_batch, seq_len, precision, lm_head)
    return micro_batch, est
