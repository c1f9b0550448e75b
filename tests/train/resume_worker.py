"""A training process for the kill -9 test: `python resume_worker.py CKPT_DIR OUT [--resume] [--slow]`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch


def train(ckpt_dir: Path, out: Path, resume: bool, slow: bool) -> None:
    from transformers import LlamaForSequenceClassification

    from tests.train.conftest import PAD, llama_config, make_classification
    from trainforge.train.config import LoopConfig
    from trainforge.train.loop import fit

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(llama_config(attention_dropout=0.2))  # dropout: the torch RNG matters
    if slow:  # give the killer a window in the middle of training
        model.register_forward_hook(lambda *a: time.sleep(0.03))
    cfg = LoopConfig(max_steps=36, batch_size=8, lr=1e-2, eval_every=9, checkpoint_every=2, keep_checkpoints=2,
                     log_every=1000, resume=resume, schedule={"warmup_ratio": 0.1, "decay": "cosine"})
    fit(model, make_classification(40), make_classification(16, seed=1), cfg, PAD, seed=3, checkpoint_dir=ckpt_dir)
    torch.save(model.state_dict(), out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    train(Path(sys.argv[1]), Path(sys.argv[2]), "--resume" in sys.argv, "--slow" in sys.argv)
