"""GRPO resume parity: from a mid-round checkpoint (the same rollouts), from an epoch boundary, and after kill -9,
`--resume` ends on exactly the weights of an uninterrupted run (CPU, fixed seed)."""

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

from tests.posttrain.grpo_resume_worker import train
from trainforge.train.checkpoint import list_checkpoints, load_step

WORKER = Path(__file__).with_name("grpo_resume_worker.py")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("grpo-ref")
    train(d / "ckpt", d / "final.pt", resume=False)
    return d


def _equal(a: Path, b: Path) -> None:
    x, y = torch.load(a), torch.load(b)
    assert x.keys() == y.keys()
    for k in x:
        assert torch.equal(x[k], y[k]), k


@pytest.mark.parametrize("keep_until, mid_round", [(5, True), (6, False)])
def test_resume_from_a_checkpoint_gives_the_uninterrupted_weights(reference, tmp_path, keep_until, mid_round):
    """Update 5 is round 3's first of μ = 2 (its rollouts are in the checkpoint); update 6 ends round 3, the last
    of the first epoch (the next round reshuffles the prompts from the restored RNG)."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(reference / "ckpt", ckpt)
    saved = load_step(ckpt, keep_until)
    assert (saved["buffer"] is not None) == mid_round
    assert saved["queue"] == [] or mid_round  # the epoch's order is used up at update 6
    for step, path in list_checkpoints(ckpt):
        if step > keep_until:
            path.unlink()
    train(ckpt, tmp_path / "resumed.pt", resume=True)
    _equal(reference / "final.pt", tmp_path / "resumed.pt")


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(reference, tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "resumed.pt"
    path = os.pathsep.join(p for p in (str(WORKER.parents[2]), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), "--slow"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any(step >= 4 for step, _ in list_checkpoints(ckpt)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the worker finished before it could be killed"
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    killed_at = list_checkpoints(ckpt)[-1][0]
    assert 4 <= killed_at < 14
    subprocess.run([sys.executable, str(WORKER), str(ckpt), str(out), "--resume"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _equal(reference / "final.pt", out)
