"""Resumable training state, written atomically so a kill -9 at any moment leaves a loadable file.

    checkpoints/
      step-00000120.pt    one file per checkpoint: trainable weights (or adapter), optimizer,
      step-00000160.pt    scaler, RNG states (python; torch CPU and each rank's CUDA generator),
      best -> (recorded)  data position (epoch order left), history; the schedule is a pure
                          function of the step, so the step is its state

Under FSDP each rank writes its own shards (torch.distributed.checkpoint, DCP); nothing is gathered:

    checkpoints/
      step-00000120.dcp/  __0_0.distcp  __1_0.distcp …  one file per rank: its DTensor shards of the
                          .metadata                      trainable weights and of the optimizer state
      step-00000120.pt    rank 0: everything else (step, data position, RNGs, history, config), "format": "dcp"

The .pt is written last and is what marks a checkpoint complete (a .dcp folder without its .pt is an
orphan, pruned and never read). DCP records each shard's offsets, so `dcp.load` into a model sharded
over a different number of ranks reads the pieces each new shard needs: a run saved on 2 ranks resumes
on 3 (or 1). The folder must be one that every rank sees (a shared filesystem across nodes).

A write goes to `<name>.tmp` (a file, or the DCP folder), is fsync'ed, renamed over the final name
(atomic on POSIX) and the folder is fsync'ed so the rename itself survives a power cut. A half-written
`.tmp` is never read. Kept: the last K checkpoints plus the best one.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

_NAME = re.compile(r"^step-(\d{8})\.pt$")
_SHARDS = re.compile(r"^step-(\d{8})\.dcp$")


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:08d}.pt"


def shards_path(folder: Path, step: int) -> Path:
    """The DCP folder of an FSDP checkpoint (its .pt holds the rest)."""
    return folder / f"step-{step:08d}.dcp"


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
    # prune: keep the newest `keep_last` and the best; the .pt goes first (a checkpoint is then incomplete,
    # never read), then its shards, and any orphaned shards of a save killed before its .pt was written
    existing = list_checkpoints(folder)
    keep = {s for s, _ in existing[-max(1, keep_last):]} | ({best_step} if best_step is not None else set())
    for s, p in existing:
        if s not in keep:
            p.unlink(missing_ok=True)
    for shards in folder.glob("step-*.dcp"):
        if (m := _SHARDS.match(shards.name)) and int(m.group(1)) not in keep:
            shutil.rmtree(shards, ignore_errors=True)
    return final


def load_latest(folder: Path) -> dict | None:
    """The newest complete checkpoint, or None. Leftover `.tmp` files and DCP folders (a write killed
    midway) are removed. Under FSDP every rank calls it (each may race the others to remove them)."""
    if folder.is_dir():
        for leftover in folder.glob("*.tmp"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
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


def full_state(tracked: dict, optimizer) -> tuple[dict, dict]:
    """(trainable weights, optimizer state) to write, one process or DDP (FSDP writes `save_shards`)."""
    return {n: p.detach().to("cpu", copy=True) if p.device.type != "cpu" else p.detach().clone()
            for n, p in tracked.items()}, optimizer.state_dict()


def save_shards(folder: Path, step: int, model: torch.nn.Module, optimizer, tracked: dict) -> str:
    """Under FSDP, on every rank (a collective): each rank writes its shards of the trainable weights and
    of the optimizer state into `step-XXXXXXXX.dcp/`. Returns the folder's name, for rank 0's .pt."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    final = shards_path(folder, step)
    tmp = final.with_name(final.name + ".tmp")
    if dist.get_rank() == 0:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # a save of this step killed midway, in a run not resumed
    dist.barrier()
    weights = {n: v for n, v in get_model_state_dict(model).items() if n in tracked}  # sharded DTensors
    # returns on every rank once rank 0 has written .metadata (each rank's file is fsync'ed by DCP)
    dcp.save({"model": weights, "optim": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=tmp)
    if dist.get_rank() == 0:
        _fsync_dir(tmp)  # its entries (DCP fsyncs the files themselves) before the rename publishes them
        shutil.rmtree(final, ignore_errors=True)  # an orphan of this step: saved, then killed before its .pt
        os.replace(tmp, final)
        _fsync_dir(folder)
    return final.name


def _load_shards(model: torch.nn.Module, optimizer, shards: Path, tracked: dict | None = None) -> dict:
    """DCP state into this model's (and optimizer's) own sharding, whatever the ranks that wrote it.
    With `optimizer` None: the weights alone, into copies (the live parameters stay as they are)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    names = tracked if tracked is not None else dict(model.named_parameters())
    weights = {n: v for n, v in get_model_state_dict(model).items() if n in names}
    if optimizer is None:
        weights = {n: v.detach().clone() for n, v in weights.items()}
        state = {"model": weights}
    else:  # the fresh optimizer's state is created (zeros) so that DCP has tensors to load into
        state = {"model": weights, "optim": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, checkpoint_id=shards)
    return state


def load_weights(model: torch.nn.Module, optimizer, saved: dict, fsdp: bool, folder: Path | None = None,
                 tracked: dict | None = None) -> None:
    """Weights and optimizer state from a checkpoint. Under FSDP a collective: each rank reads what its
    shards need from the DCP folder beside the .pt in `folder` (or, from a full-state checkpoint of an
    earlier version, loads the full state and keeps its shard), so the number of ranks may differ from
    the run that wrote it."""
    from trainforge.errors import UserError

    if bool(saved.get("fsdp_optimizer")) != fsdp:
        raise UserError("the checkpoint was written " + ("under" if saved.get("fsdp_optimizer") else "without") +
                        " distributed=fsdp; resume it with the same train.distributed (or start without --resume)")
    if not fsdp:
        model.load_state_dict(saved["weights"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    if saved.get("format") == "dcp":
        state = _load_shards(model, optimizer, folder / saved["shards"], tracked)
        set_model_state_dict(model, state["model"], options=StateDictOptions(strict=False))
        set_optimizer_state_dict(model, optimizer, state["optim"])
        return
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


def best_snapshot(folder: Path, step: int, model: torch.nn.Module, tracked: dict) -> dict | None:
    """The best-weights snapshot fit keeps (CPU tensors; this rank's shards under FSDP), from the
    checkpoint of step `step`. Under FSDP a collective when the checkpoint is sharded (DCP)."""
    saved = load_step(folder, step)
    if saved is None:
        return None
    if saved.get("format") != "dcp":
        return local_snapshot(saved["weights"], tracked)
    weights = _load_shards(model, None, folder / saved["shards"], tracked)["model"]
    return {n: local(v).detach().to("cpu", copy=True) for n, v in weights.items()}


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
