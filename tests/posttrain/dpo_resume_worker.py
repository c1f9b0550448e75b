"""A DPO training process for the kill -9 test: `python dpo_resume_worker.py CKPT_DIR OUT [--resume] [--slow]`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

STEPS, BATCH, PAIRS = 14, 6, 20  # 4 batches an epoch (the last one short): 14 steps cross three epoch boundaries


def train(ckpt_dir: Path, out: Path, resume: bool, slow: bool) -> None:
    from tests.posttrain.conftest import make_lm, make_tokenizer, review_rows
    from trainforge.posttrain.dpo import LossSettings
    from trainforge.posttrain.dpo_loop import REFERENCE_FILE, fit_dpo, reference_logps
    from trainforge.posttrain.preference import encode_pairs, pairs_from_records
    from trainforge.train.config import LoopConfig

    torch.set_num_threads(1)
    rows = review_rows(PAIRS)
    tok = make_tokenizer(rows)
    pairs = pairs_from_records([{"prompt": r["text"], "chosen": "yes great" if i % 3 else "fine", "rejected": "no"}
                                for i, r in enumerate(rows)])
    enc = encode_pairs(pairs, tok, 64)
    model = make_lm(tok, seed=0)  # the reference: rebuilt identically on resume, so its stored log-probs match
    ref, _ = reference_logps(model, {"train": enc, "val": enc}, ckpt_dir / REFERENCE_FILE, tok.pad_token_id, 8,
                             torch.device("cpu"), "fp32", resume)
    if slow:  # give the killer a window in the middle of training
        model.register_forward_hook(lambda *a: time.sleep(0.04))
    cfg = LoopConfig(max_steps=STEPS, batch_size=BATCH, lr=1e-2, eval_every=5, checkpoint_every=1, keep_checkpoints=100,
                     log_every=1000, resume=resume, schedule={"warmup_ratio": 0.1, "decay": "cosine"})
    result = fit_dpo(model, enc, enc, cfg, LossSettings("sigmoid", 0.1), tok.pad_token_id, seed=3, checkpoint_dir=ckpt_dir,
                     reference=ref)
    torch.save({"weights": model.state_dict(), "history": result.history}, out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    train(Path(sys.argv[1]), Path(sys.argv[2]), "--resume" in sys.argv, "--slow" in sys.argv)
