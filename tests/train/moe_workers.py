"""Processes for the MoE tests: 2 gloo ranks against one process, and the kill -9 → resume run.

    python moe_workers.py resume CKPT_DIR OUT [--resume] [--slow]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

STEPS, GLOBAL_BATCH = 4, 16


def _balanced_fit(model, cfg, ckpt_dir=None):
    from tests.train.conftest import PAD, make_lm
    from trainforge.tasks import CausalLMTask
    from trainforge.train.config import MoeConfig
    from trainforge.train.loop import fit
    from trainforge.train.moe import attach

    task = CausalLMTask(16)
    # gamma large enough that every step moves the biases visibly; a sequence-wise loss rides along
    balancer, kw = attach(model, MoeConfig(bias_update_gamma=0.05, aux_loss_alpha=0.01), task)
    fit(model, make_lm(32), make_lm(8, seed=1), cfg, PAD, seed=0, task=task, checkpoint_dir=ckpt_dir, **kw)
    return balancer


def _cfg(**kw):
    from trainforge.train.config import LoopConfig

    return LoopConfig(**{"max_steps": STEPS, "batch_size": GLOBAL_BATCH, "lr": 1e-2, "log_every": 1000,
                         "schedule": {"warmup_ratio": 0.0}, **kw})


def _biases(model) -> list[torch.Tensor]:
    from trainforge.models.moe import routers

    return [r.module.e_score_correction_bias.clone() for r in routers(model)]


def single_process(out: Path) -> None:
    from tests.train.moe_models import deepseek

    model = deepseek()
    balancer = _balanced_fit(model, _cfg())
    torch.save({"bias": _biases(model), "history": balancer.history}, out / "moe-1.pt")


def rank_main(rank: int, world: int, out: str, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from tests.train.moe_models import deepseek
    from trainforge.train import distributed

    info = distributed.init(device=torch.device("cpu"))
    model = deepseek()
    balancer = _balanced_fit(model, _cfg(grad_accum=2))  # 2 ranks × 2 micro-batches of 4
    if info.is_main:
        torch.save({"bias": _biases(model), "history": balancer.history}, Path(out) / "moe-ddp.pt")
    torch.distributed.destroy_process_group()


def resume_run(ckpt_dir: Path, out: Path, resume: bool, slow: bool) -> None:
    from tests.train.moe_models import deepseek

    torch.set_num_threads(1)
    model = deepseek()
    if slow:  # a window for the killer in the middle of training
        model.register_forward_hook(lambda *a: time.sleep(0.05))
    cfg = _cfg(max_steps=24, batch_size=8, eval_every=6, checkpoint_every=2, resume=resume)
    _balanced_fit(model, cfg, ckpt_dir)
    torch.save(model.state_dict(), out)  # the routers' biases are buffers in it


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    resume_run(Path(sys.argv[2]), Path(sys.argv[3]), "--resume" in sys.argv, "--slow" in sys.argv)
