"""Where the work runs and in what precision, decided once per stage from the config's `device:`.

    device: auto      cuda:LOCAL_RANK when CUDA is present (one GPU per torchrun rank), else Apple mps, else cpu
            cpu       always the CPU (every test pins this)
            cuda      cuda:LOCAL_RANK;   cuda:N  that GPU
            mps       Apple's Metal backend, where torch has it

Precision follows the device: `precision: auto` is bf16 on a GPU that supports it and fp32 elsewhere
(bf16 autocast on a CPU is slower than fp32 on most CPUs and changes the numbers). Autocast is
opened for the device the batch is on — `torch.autocast("cuda")` does not touch CPU ops, which is
why picking the device type from "is CUDA installed" silently trained CPU runs in fp32. A
GradScaler is only for CUDA fp16 (bf16 has fp32's exponent range). TF32 matmuls are turned on for
fp32 work on Ampere and later (10-bit mantissa products, fp32 accumulation: the PyTorch default
for convolutions, a ~2-8x faster matmul, off by default for matmuls since torch 1.12).

Importing this module does not import torch; each function does.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from trainforge.errors import UserError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(spec: str = "auto", key: str = "device"):
    """The torch.device `spec` names on this machine; a UserError naming `key` when it is not here."""
    import torch

    spec = (spec or "auto").strip().lower()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise UserError(f"{key}: mps — this torch build or machine has no Apple Metal backend; use {key}: cpu or auto")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}, but no GPU is visible"
            raise UserError(f"{key}: {spec} — this machine has no usable CUDA device ({build}); set {key}: cpu or auto")
        index = local_rank if spec == "cuda" else _index(spec, key)
        count = torch.cuda.device_count()
        if index >= count:
            raise UserError(f"{key}: {spec} — this machine has {count} CUDA device(s) (cuda:0…cuda:{count - 1})")
        return torch.device("cuda", index)
    raise UserError(f"{key}: {spec!r} is not a device; use {DEVICE_CHOICES}")


def _index(spec: str, key: str) -> int:
    tail = spec.partition(":")[2]
    if not tail.isdigit():
        raise UserError(f"{key}: {spec!r} — expected cuda:N with N a GPU index, e.g. cuda:0")
    return int(tail)


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe(device) -> dict[str, Any]:
    """What the printout and the manifest say about the device: its name and memory."""
    import torch

    out: dict[str, Any] = {"device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(name=props.name, memory_gib=round(props.total_memory / (1 << 30), 1),
                   capability=f"{props.major}.{props.minor}", bf16=supports_bf16(device))
    elif device.type == "cpu":
        out.update(name=_cpu_name(), threads=torch.get_num_threads())
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def supports_bf16(device) -> bool:
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type in ("cpu", "mps")


def cpu_bf16_units() -> str | None:
    """The CPU's native bf16 matmul units ("AMX-BF16", "AVX512-BF16"), None where bf16 would be emulated (AVX2)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo", encoding="utf-8")
                      if line.startswith("flags")), [])
    except OSError:
        return None
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def resolve_precision(precision: str, device, key: str = "train.precision") -> str:
    """fp32 | bf16 | fp16; `auto` is bf16 on a GPU that has it, else fp32; `native` is also bf16 on a CPU with bf16
    units (AMX, AVX512-BF16: ~1.7× a step of the quickstart's model on a Zen 4 core), fp32 where bf16 would be
    emulated. bf16 asked of a GPU without it is refused."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and supports_bf16(device) else "fp32"
    if precision == "native":
        if device.type == "cpu":
            return "bf16" if cpu_bf16_units() else "fp32"
        return "bf16" if supports_bf16(device) else ("fp16" if device.type == "cuda" else "fp32")
    if precision == "bf16" and device.type == "cuda" and not supports_bf16(device):
        raise UserError(f"{key}: bf16 — {describe(device).get('name', device)} has no bf16 support; use fp16 or fp32")
    return precision


def autocast(device, precision: str):
    """Mixed-precision autocast for `device`'s ops (a no-op context for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def grad_scaler(device, precision: str):
    """A GradScaler for CUDA fp16 only; None otherwise (bf16 and fp32 do not underflow like fp16)."""
    import torch

    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def enable_tf32(device) -> bool:
    """TF32 for fp32 matmuls and convolutions on Ampere (capability 8.0) and later; True when turned on."""
    import torch

    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] < 8:
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def set_deterministic(on: bool) -> str | None:
    """Deterministic kernels (cuDNN, cuBLAS, torch's own); returns what it costs, for the printout.
    cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before its first call, so this runs before the model is built."""
    import torch

    if not on:
        return None
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return ("deterministic kernels: cuDNN autotuning off, cuBLAS fixed workspace, no atomics-based scatter/index_add; "
            "expect 5-30% slower GPU steps (nothing changes on CPU)")


def to_device(batch: dict, device) -> dict:
    """Tensors of a batch onto `device`; pinned host memory makes the copy asynchronous on CUDA."""
    if device.type == "cpu":
        return batch
    return {k: (v.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else v.to(device))
            if hasattr(v, "to") else v for k, v in batch.items()}


def available_memory(device) -> int:
    """Bytes free on `device`: the GPU's free memory (mem_get_info), or the host's MemAvailable."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    from trainforge.train.memory import available_bytes

    return available_bytes()


def rng_state(device) -> dict:
    """RNG states to checkpoint: torch's CPU generator and, on CUDA, this rank's device generator."""
    import torch

    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def machine() -> dict[str, Any]:
    """What the manifest and the report's summary say about the machine a run ran on."""
    import platform

    import torch

    out: dict[str, Any] = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "platform": platform.platform(terse=True)}
    if torch.cuda.is_available():
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out
