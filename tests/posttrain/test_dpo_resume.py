"""kill -9 mid-DPO, then --resume: the same final weights (and per-step metrics) as an uninterrupted run, also when
the resumed checkpoint sits exactly on an epoch boundary (an empty queue: the next epoch's order comes from the
restored RNG, and no step is skipped or repeated)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.posttrain.dpo_resume_worker import BATCH, PAIRS, train
from trainforge.posttrain.dpo_loop import REFERENCE_FILE
from trainforge.train.checkpoint import checkpoint_path, list_checkpoints, load_step

WORKER = Path(__file__).with_name("dpo_resume_worker.py")


def _resume(ckpt: Path, out: Path) -> dict:
    """In this process: what matters is that the run it continues died by SIGKILL, mid-write or not."""
    train(ckpt, out, resume=True, slow=False)
    return torch.load(out, weights_only=False)


@pytest.mark.slow
def test_kill_9_mid_dpo_then_resume_gives_the_uninterrupted_weights_across_epoch_boundaries(tmp_path):
    reference = tmp_path / "reference.pt"
    train(tmp_path / "ckpt-ref", reference, resume=False, slow=False)
    want = torch.load(reference, weights_only=False)

    ckpt = tmp_path / "ckpt"
    path = os.pathsep.join(p for p in (str(WORKER.parents[2]), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(tmp_path / "never.pt"), "--slow"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any(step >= 6 for step, _ in list_checkpoints(ckpt)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the worker finished before it could be killed"
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = list_checkpoints(ckpt)[-1][0]
    assert 6 <= killed_at < 14 and (ckpt / REFERENCE_FILE).is_file()

    # the end of the first epoch: a checkpoint whose queue is empty; resume a copy of the run from exactly there
    boundary = -(-PAIRS // BATCH)
    at_boundary = tmp_path / "ckpt-boundary"
    shutil.copytree(ckpt, at_boundary)
    assert load_step(at_boundary, boundary)["queue"] == []
    for step, p in list_checkpoints(at_boundary):
        if step > boundary:
            p.unlink()
    assert checkpoint_path(at_boundary, boundary).is_file()

    for folder, name in ((ckpt, "latest"), (at_boundary, "boundary")):
        got = _resume(folder, tmp_path / f"resumed-{name}.pt")
        assert [h["step"] for h in got["history"]] == list(range(1, 15)), name
        assert got["history"] == want["history"], name  # every step's loss, lr and TRL metrics
        for k, v in want["weights"].items():
            assert torch.equal(got["weights"][k], v), f"{name}: {k}"
