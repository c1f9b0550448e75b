"""`trainforge models recommend`: which model for which budget, measured on this machine instead of quoted.

Each candidate (a preset at a few sizes, for the task) is built from its config in a forked child process and
measured there: parameters, peak memory of the process while it builds the model and runs the forward passes
(the child's maximum resident set minus the parent's at the fork, so it includes importing the model's
transformers module; on CUDA, torch's peak allocated bytes), and
the median latency of a forward pass at the requested batch size. Candidates over a budget are dropped with the
budget they broke; the rest are ranked by latency. A fork per candidate keeps one model's memory out of the
next one's figure.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field

from trainforge.errors import UserError

CANDIDATES: dict[str, list[tuple[str, dict]]] = {
    "image_classification": [
        ("vit-tiny", {"num_hidden_layers": 2}), ("vit-tiny", {}), ("vit-small", {}),
        ("mobilenet-v2-tiny", {}), ("mobilenet-v2-tiny", {"depth_multiplier": 1.0}),
        ("efficientnet-tiny", {}), ("efficientnet-b0", {}),
    ],
    "clip": [("clip-tiny", {}), ("chinese-clip-tiny", {})],
    "classification": [("encoder-tiny", {}), ("encoder-small", {}), ("llama-tiny", {}), ("llama-small", {})],
}


@dataclass
class Measured:
    preset: str
    overrides: dict
    family: str
    params: int
    peak_memory_mb: float
    latency_ms: float
    device: str
    over_budget: list[str] = field(default_factory=list)


def _build(task: str, preset: str, overrides: dict, size: int):
    """(model, inputs) for one forward pass at batch 1 (repeated to the batch by the caller)."""
    import torch

    if task == "image_classification":
        from trainforge.vision.models import build_image_classifier

        return build_image_classifier(preset, [str(i) for i in range(10)], size, 0.0, **overrides), \
            {"pixel_values": torch.randn(1, 3, size, size)}
    if task == "clip":
        from trainforge.vision.models import build_clip

        return build_clip(preset, 2000, {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}, size, 16), \
            {"pixel_values": torch.randn(1, 3, size, size), "input_ids": torch.tensor([[2] + [5] * 14 + [3]])}
    from trainforge.models.presets import build_classifier

    ids = torch.randint(4, 8000, (1, 128))
    return build_classifier(preset, 8000, 2, 128, 0.0, {0: "a", 1: "b"}, 0, **overrides), \
        {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _measure_here(task: str, preset: str, overrides: dict, size: int, batch: int, repeats: int, device: str,
                  rss_at_fork_kb: int) -> dict:
    import torch

    from trainforge.models.families import family_of

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, one = _build(task, preset, overrides, size)
    model = model.eval().to(device)
    inputs = {k: v.expand(batch, *v.shape[1:]).contiguous().to(device) for k, v in one.items()}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        model(**inputs)  # warm-up
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            model(**inputs)
            sync()
            times.append(time.perf_counter() - t0)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 1e6
    else:
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_at_fork_kb) / 1e3
    return {"family": family_of(model).name, "params": sum(p.numel() for p in model.parameters()),
            "peak_memory_mb": round(peak, 1), "latency_ms": round(statistics.median(times) * 1000, 3)}


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def measure(task: str, preset: str, overrides: dict, size: int, batch: int, repeats: int = 5, device: str = "cpu") -> Measured:
    """One candidate measured in a forked child (its own memory high-water mark)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    rss = _rss_kb()

    def run():
        try:
            child.send(("ok", _measure_here(task, preset, overrides, size, batch, repeats, device, rss)))
        except Exception as e:  # noqa: BLE001 — reported, not raised, so one bad candidate does not stop the table
            child.send(("error", f"{type(e).__name__}: {e}"))

    proc = ctx.Process(target=run)
    proc.start()
    status, value = parent.recv()
    proc.join()
    if status != "ok":
        raise UserError(f"models recommend: {preset} {overrides or ''} could not be measured: {value}")
    return Measured(preset, overrides, device=device, **value)


def within_budget(rows: list[Measured], max_params: int | None, max_latency_ms: float | None,
                  max_memory_mb: float | None) -> list[Measured]:
    """Mark each row's broken budgets; return those within every budget, fastest first."""
    for r in rows:
        r.over_budget = ([f"params {r.params:,} > {max_params:,}"] if max_params is not None and r.params > max_params else []) \
            + ([f"latency {r.latency_ms:.1f} ms > {max_latency_ms} ms"] if max_latency_ms is not None and r.latency_ms > max_latency_ms else []) \
            + ([f"memory {r.peak_memory_mb:.0f} MB > {max_memory_mb} MB"] if max_memory_mb is not None and r.peak_memory_mb > max_memory_mb else [])
    return sorted((r for r in rows if not r.over_budget), key=lambda r: (r.latency_ms, r.params))


def recommend(task: str, batch: int = 1, size: int = 32, max_params: int | None = None, max_latency_ms: float | None = None,
              max_memory_mb: float | None = None, repeats: int = 5) -> tuple[list[Measured], list[Measured]]:
    """(ranked rows within budget, every measured row) for `task` on the CPU, and on CUDA when present."""
    import torch

    if task not in CANDIDATES:
        raise UserError(f"models recommend --task {task}: one of {', '.join(CANDIDATES)}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [measure(task, p, o, size, batch, repeats, d) for d in devices for p, o in CANDIDATES[task]]
    return within_budget(rows, max_params, max_latency_ms, max_memory_mb), rows


def print_table(ranked: list[Measured], rows: list[Measured], batch: int) -> None:
    print(f"{'rank':<5}{'model':<42}{'family':<14}{'params':>12}{'peak MB':>10}{f'ms @ batch {batch}':>16}  device")
    for i, r in enumerate(ranked, 1):
        name = r.preset + (" " + ",".join(f"{k}={v}" for k, v in r.overrides.items()) if r.overrides else "")
        print(f"{i:<5}{name:<42}{r.family:<14}{r.params:>12,}{r.peak_memory_mb:>10.1f}{r.latency_ms:>16.2f}  {r.device}")
    for r in rows:
        if r.over_budget:
            print(f"  over budget: {r.preset} {r.overrides or ''} ({r.device}): {'; '.join(r.over_budget)}")


def as_json(rows: list[Measured]) -> list[dict]:
    return [asdict(r) for r in rows]
