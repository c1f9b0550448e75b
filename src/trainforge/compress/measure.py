"""Measuring a variant against the original: metric on the held-out split, latency, size.

Latency is timed round-robin: for each batch, every model (original included) runs once in turn,
so a noisy neighbour on a shared machine slows all of them alike and the speedup ratios stay
honest even when absolute milliseconds drift; the order rotates from batch to batch. Batches of 32 are random test examples padded to
the longest among them (what a server batching arriving requests sees); batch 1 is unpadded.

On a GPU every model of a round-robin is on that GPU, its batches are copied there before the clock
starts, and the clock waits for the device (torch.cuda.synchronize) on both sides of each forward:
CUDA launches are asynchronous, so an unsynchronised timer measures the launch, not the work.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from trainforge.batching import Encoded, collate, model_device, predict_logits
from trainforge.threads import torch_threads


@dataclass
class Measurement:
    name: str
    metrics: dict[str, float]
    p50_b1_ms: float
    p95_b1_ms: float
    p50_b32_ms: float
    p95_b32_ms: float
    throughput_b32: float
    """Examples per second at batch 32 (from the p50 latency)."""
    size_mb: float
    """Size on disk of the weight file(s), 10^6 bytes."""
    linear_mb: float
    """Of which linear-layer weights (int8 codes plus scales for INT8)."""
    params: int

    def as_dict(self) -> dict:
        return asdict(self)


def score(model: nn.Module, enc: Encoded, pad_id: int) -> tuple[dict[str, float], torch.Tensor]:
    """Classification metrics (scikit-learn, like the eval stage) and the logits (N, labels)."""
    from trainforge.evaluate.metrics import classification_metrics

    logits = predict_logits(model, enc, 64, pad_id)
    pred = logits.argmax(-1).tolist()
    return classification_metrics([str(y) for y in enc.labels], [str(p) for p in pred]), logits


def latency_batches(enc: Encoded, n_b32: int, pad_id: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(2·n_b32 single examples, n_b32 batches of 32), drawn at random from `enc` with `seed`."""
    rng = random.Random(seed)
    order = list(range(len(enc)))
    rng.shuffle(order)
    strip = lambda b: {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}  # noqa: E731
    b32 = [strip(collate(enc, [order[(i * 32 + j) % len(order)] for j in range(32)], pad_id)) for i in range(n_b32)]
    b1 = [strip(collate(enc, [order[i % len(order)]], pad_id)) for i in range(2 * n_b32)]
    return b1, b32


@torch.inference_mode()
def round_robin_latency(models: dict[str, nn.Module], batches: list[dict], repeats: int = 2) -> dict[str, list[float]]:
    """Seconds per forward for each model, every batch timed once per model in turn.

    Timed the way `trainforge serve` runs them: with glibc keeping freed memory (trainforge.allocator),
    so the figures are the models' own and not the page-fault noise of a fresh allocation per batch."""
    from trainforge.allocator import keep_freed_memory
    from trainforge.device import to_device

    keep_freed_memory()
    devices = {model_device(m) for m in models.values()}
    if len(devices) != 1:  # a CPU time beside a GPU time is no speedup
        raise ValueError(f"round_robin_latency: every model must be on one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    batches = [to_device(b, device) for b in batches]  # copied once, outside the clock
    for m in models.values():
        m.eval()
        m(**batches[0])  # warm-up: first-call allocations and kernel selection
    times: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for r in range(repeats):
        for i, batch in enumerate(batches):
            k = (i + r) % len(names)  # rotate who goes first: no model always meets a cold cache
            for name in names[k:] + names[:k]:
                sync()
                t0 = time.perf_counter()
                models[name](**batch)
                sync()
                times[name].append(time.perf_counter() - t0)
    return times


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def latency_table(models: dict[str, nn.Module], b1: list[dict], b32: list[dict], threads: int) -> dict[str, dict]:
    """{name: p50/p95 at batch 1 and 32 in ms, throughput at 32} with `threads` torch threads."""
    with torch_threads(threads):
        t1 = round_robin_latency(models, b1, repeats=3)
        t32 = round_robin_latency(models, b32, repeats=3)
    out = {}
    for name in models:
        p50_32 = statistics.median(t32[name])
        out[name] = {
            "p50_b1_ms": round(statistics.median(t1[name]) * 1000, 3),
            "p95_b1_ms": round(percentile(t1[name], 0.95) * 1000, 3),
            "p50_b32_ms": round(p50_32 * 1000, 3),
            "p95_b32_ms": round(percentile(t32[name], 0.95) * 1000, 3),
            "throughput_b32": round(32 / p50_32, 1),
        }
    return out


def weights_size_mb(model_dir: Path) -> float:
    """Size of the weight files in a model directory (safetensors), tokenizer and config excluded."""
    return round(sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors")) / 1e6, 4)


def param_count(model: nn.Module) -> int:
    """Parameters plus int8 weight buffers (a quantised linear keeps its weight as a buffer or packed)."""
    from trainforge.compress.quantize import Int8WeightOnlyLinear

    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, Int8WeightOnlyLinear):
            n += m.weight.numel()
        elif type(m).__name__ == "Linear" and m.__module__.startswith("torch.ao.nn.quantized"):
            n += m.weight().numel()
    return n


def fastest_kernel(weight_only: nn.Module, batches: list[dict], threads: int) -> tuple[str, dict[str, float]]:
    """(kernel, {kernel: median ms per batch}): every available kernel timed round-robin on `batches`."""
    from trainforge.compress.quantize import available_kernels, to_dynamic_int8

    models = {k: to_dynamic_int8(weight_only, k) for k in available_kernels()}
    with torch_threads(threads):
        times = round_robin_latency(models, batches, repeats=2)
    ms = {k: round(statistics.median(v) * 1000, 3) for k, v in times.items()}
    return min(ms, key=ms.get), ms
