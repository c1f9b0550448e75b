"""MoE balancing inside the loop: 2 gloo ranks update the biases as one process on the global batch, and
kill -9 → resume gives the uninterrupted run's weights and biases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.train.moe_workers import resume_run
from trainforge.train.checkpoint import list_checkpoints

WORKER = Path(__file__).with_name("moe_workers.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_bias_update_under_two_gloo_ranks_equals_one_process(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from tests.train.moe_workers import rank_main, single_process

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    torch.set_num_threads(1)
    single_process(tmp_path)
    mp.spawn(rank_main, args=(2, str(tmp_path), _free_port()), nprocs=2, join=True)
    one, ddp = torch.load(tmp_path / "moe-1.pt"), torch.load(tmp_path / "moe-ddp.pt")
    assert any(b.abs().sum() > 0 for b in one["bias"])  # the update did move them
    for a, b in zip(one["bias"], ddp["bias"]):
        assert torch.equal(a, b)  # ±γ steps from the same global counts: exactly equal
    assert [h["max_mean"] for h in one["history"]] == [h["max_mean"] for h in ddp["history"]]


@pytest.mark.slow
def test_kill_9_then_resume_keeps_the_bias(tmp_path):
    reference = tmp_path / "reference.pt"
    resume_run(tmp_path / "ckpt-ref", reference, resume=False, slow=False)

    ckpt, out = tmp_path / "ckpt", tmp_path / "resumed.pt"
    path = os.pathsep.join(p for p in (str(WORKER.parents[2]), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.Popen([sys.executable, str(WORKER), "resume", str(ckpt), str(out), "--slow"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any(step >= 8 for step, _ in list_checkpoints(ckpt)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the worker finished before it could be killed"
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert 8 <= list_checkpoints(ckpt)[-1][0] < 24

    subprocess.run([sys.executable, str(WORKER), "resume", str(ckpt), str(out), "--resume"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    a, b = torch.load(reference), torch.load(out)
    biases = [k for k in a if k.endswith("e_score_correction_bias")]
    assert biases and any(a[k].abs().sum() > 0 for k in biases)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
