"""Checkpoints: atomic writes, keep last K + best, and kill -9 → --resume gives identical weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.train.resume_worker import train
from trainforge.train.checkpoint import list_checkpoints, load_latest, save_checkpoint

WORKER = Path(__file__).with_name("resume_worker.py")


def test_keeps_last_k_and_best_and_ignores_half_written_files(tmp_path):
    for step in range(1, 7):
        save_checkpoint(tmp_path, step, {"step": step}, keep_last=2, best_step=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 5, 6]
    (tmp_path / "step-00000009.pt.tmp").write_bytes(b"half a checkpoi")  # a write killed midway
    assert load_latest(tmp_path)["step"] == 6
    assert not list(tmp_path.glob("*.tmp"))


def test_sharded_checkpoints_prune_their_dcp_folders_and_half_written_ones(tmp_path):
    """FSDP's layout without the ranks: a DCP folder per step beside rank 0's .pt (written last). Pruning removes
    both, and orphaned folders (a save killed before its .pt); a half-written `.dcp.tmp` folder is never read."""
    (tmp_path / "step-00000000.dcp").mkdir(parents=True)  # orphan: its .pt was never written
    for step in range(1, 7):
        (tmp_path / f"step-{step:08d}.dcp").mkdir()
        (tmp_path / f"step-{step:08d}.dcp" / "__0_0.distcp").write_bytes(b"shard")
        save_checkpoint(tmp_path, step, {"step": step, "format": "dcp", "shards": f"step-{step:08d}.dcp"},
                        keep_last=2, best_step=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 5, 6]
    assert sorted(p.name for p in tmp_path.glob("*.dcp")) == ["step-00000002.dcp", "step-00000005.dcp", "step-00000006.dcp"]
    (tmp_path / "step-00000009.dcp.tmp").mkdir()  # a sharded save killed midway
    (tmp_path / "step-00000009.dcp.tmp" / ".metadata").write_bytes(b"half a metad")
    assert load_latest(tmp_path)["step"] == 6
    assert not list(tmp_path.glob("*.tmp"))


def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path):
    reference = tmp_path / "reference.pt"
    train(tmp_path / "ckpt-ref", reference, resume=False, slow=False)

    ckpt, out = tmp_path / "ckpt", tmp_path / "resumed.pt"
    # the repo root for tests/, then whatever PYTHONPATH already holds (a worktree's src/ must win in the worker too)
    path = os.pathsep.join(p for p in (str(WORKER.parents[2]), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), "--slow"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any(step >= 12 for step, _ in list_checkpoints(ckpt)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the worker finished before it could be killed"
    time.sleep(0.1)  # land the kill somewhere between checkpoints (or during a write)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    killed_at = list_checkpoints(ckpt)[-1][0]
    assert 12 <= killed_at < 36

    subprocess.run([sys.executable, str(WORKER), str(ckpt), str(out), "--resume"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    a, b = torch.load(reference), torch.load(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
