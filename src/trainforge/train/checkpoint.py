"""Resumable training state, written atomically so a kill -9 at any moment leaves a loadable file.

    checkpoints/
      step-00000120.pt    one file per checkpoint: trainable weights (or adapter), optimizer,
      step-00000160.pt    scaler, RNG states (python, torch), data position (epoch order left),
      best -> (recorded)  history; the schedule is a pure function of the step, so the step is its state

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


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
