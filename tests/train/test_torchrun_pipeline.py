"""`trainforge train` unchanged under torchrun: rank 0 owns the run directory, both ranks train."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import yaml

from ..conftest import tiny_config_dict


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trainforge_train_under_torchrun_two_ranks(tmp_path, reviews_jsonl):
    raw = tiny_config_dict(reviews_jsonl, tmp_path / "runs")
    del raw["eval"]
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "trainforge", "train", str(cfg)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    manifest = json.loads((run / "manifest.json").read_text())
    assert [manifest["stages"][s]["status"] for s in ("data", "train")] == ["ok", "ok"]
    assert (run / "model" / "model.safetensors").is_file()
    state = json.loads((run / "model" / "trainer_state.json").read_text())
    assert state["steps"] == 6
    # rank 1 printed nothing of the pipeline: one "done" line per stage
    assert proc.stderr.count("train  done") == 1, proc.stderr[-2000:]

    again = subprocess.run(cmd[:-2] + ["train", str(cfg)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("cached") == 2  # both ranks agree to skip: nobody waits forever
