"""Resumable training state, written atomically so a kill -9 at any moment leaves a loadable file.

    checkpoints/
      step-00000120.pt    one file per checkpoint: trainable weights (or adapter), optimizer,
      step-00000160.pt    scaler, RNG states (python; torch CPU and each rank's CUDA generator),
      best -> (recorded)  data position (epoch order left), history; the schedule is a pure
                          function of the step, so the step is its state

Under FSDP the file holds the FULL state, gathered collectively (every rank takes part, rank 0 writes):
the weights as one process would have them and the optimizer state keyed by parameter name. Any number
of ranks can resume from it (each reads the file and keeps its shard), and so can a single process for
the weights. Sharded DCP checkpoints (each rank writing its shard) would scale past what rank 0's host
memory holds; they are not done here.

A write goes to `<name>.tmp`, is fsync'ed, renamed over the final name (atomic on POSIX) and the
folder is fsync'ed so the rename itself survives a power cut. A half-written `.tmp` is never read.
Kept: the last K checkpoints plus the best one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:08d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(folder: Path, step: int, state: dict, keep_last: int, best_step: int | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, step)
    tmp = final.with_suffix(".pt.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(folder)
    # prune: keep the newest `keep_last` and the best
    existing = list_checkpoints(folder)
    keep = {s for s, _ in existing[-max(1, keep_last):]} | ({best_step} if best_step is not None else set())
    for s, p in existing:
        if s not in keep:
            p.unlink(missing_ok=True)
    return final


def load_latest(folder: Path) -> dict | None:
    """The newest complete checkpoint, or None. Leftover `.tmp` files (a write killed midway) are removed."""
    if folder.is_dir():
        for leftover in folder.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
    found = list_checkpoints(folder)
    if not found:
        return None
    return torch.load(found[-1][1], map_location="cpu", weights_only=False)


def load_step(folder: Path, step: int) -> dict | None:
    p = checkpoint_path(folder, step)
    return torch.load(p, map_location="cpu", weights_only=False) if p.is_file() else None


# --------------------------------------------------------------------------- what fit saves and restores


def local(p: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter: the shard of an FSDP DTensor, the tensor itself otherwise."""
    return p.to_local() if hasattr(p, "to_local") else p


def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_state(model: torch.nn.Module, optimizer, tracked: dict, fsdp: bool) -> tuple[dict, dict]:
    """(trainable weights, optimizer state) to write. Under FSDP a collective (call it on every rank):
    the full tensors land in rank 0's CPU memory, the other ranks get empty dicts."""
    if not fsdp:
        return {n: p.detach().to("cpu", copy=True) if p.device.type != "cpu" else p.detach().clone()
                for n, p in tracked.items()}, optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = _full_options(cpu_offload=True)
    weights = {n: v for n, v in get_model_state_dict(model, options=options).items() if n in tracked}
    return weights, get_optimizer_state_dict(model, optimizer, options=options)


def load_weights(model: torch.nn.Module, optimizer, saved: dict, fsdp: bool) -> None:
    """Weights and optimizer state from a checkpoint; under FSDP every rank loads the full state and keeps
    its shard, so the number of ranks may differ from the run that wrote it."""
    from trainforge.errors import UserError

    if bool(saved.get("fsdp_optimizer")) != fsdp:
        raise UserError("the checkpoint was written " + ("under" if saved.get("fsdp_optimizer") else "without") +
                        " distributed=fsdp; resume it with the same train.distributed (or start without --resume)")
    if not fsdp:
        model.load_state_dict(saved["weights"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, saved["weights"], options=_full_options(strict=False))
    set_optimizer_state_dict(model, optimizer, saved["optimizer"], options=_full_options())


def local_snapshot(weights: dict, tracked: dict) -> dict:
    """A checkpoint's full best weights as fit keeps its best-weights snapshot: this rank's shards under FSDP."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    out = {}
    for n, v in weights.items():
        p = tracked.get(n)
        if isinstance(p, DTensor):  # every rank holds the full tensor: no communication needed
            v = distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None).to_local().cpu()
        out[n] = v
    return out


def load_snapshot(model: torch.nn.Module, tracked: dict, snapshot: dict) -> None:
    """Put a best-weights snapshot (CPU tensors; shards under FSDP) back into the training model."""
    if not any(hasattr(p, "to_local") for p in tracked.values()):
        model.load_state_dict(snapshot, strict=False)
        return
    with torch.no_grad():
        for n, v in snapshot.items():
            local(tracked[n]).copy_(v)


def gather_into(model: torch.nn.Module, sharded: torch.nn.Module, device) -> None:
    """The FSDP-sharded copy's full weights into the caller's plain `model`, on every rank (a collective)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    full = get_model_state_dict(sharded, options=_full_options())
    model.load_state_dict(full, strict=False)
    if any(p.device != device for p in model.parameters()):
        model.to(device)


def restore_rng(saved: dict, device, rank: int, world: int) -> None:
    """This rank's torch RNG states; a checkpoint from before per-rank states has `rng_torch` (CPU) alone.
    Resumed on a different number of ranks, only the CPU generator (the same on every rank) is restored."""
    from trainforge import device as devices

    states = saved.get("rng_ranks")
    if not states:
        torch.set_rng_state(saved["rng_torch"])
    elif len(states) == world:
        devices.set_rng_state(states[rank], device)
    else:
        torch.set_rng_state(states[0]["cpu"])


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
