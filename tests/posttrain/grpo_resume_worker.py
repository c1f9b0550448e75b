"""A GRPO process for the resume tests: `python grpo_resume_worker.py CKPT_DIR OUT [--resume] [--slow]`.

6 prompts, 2 per step, G = 4, μ = 2 updates per round, β > 0 (a frozen reference), a checkpoint after every
update: 7 rounds cross two epoch boundaries (after rounds 3 and 6) and every odd update's checkpoint falls
mid-round (it holds the round's rollouts)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

PROMPTS = ["hello world", "the lazy dog", "kv cache", "how are you", "quick fox", "质量太差了"]


def letter_e(prompts, completions, **_):
    """A reward a random tiny model's samples disagree on: the share of 'e' characters."""
    return [c.count("e") / max(1, len(c)) for c in completions]


def build():
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.serve.tiny_models import CHAT_TEMPLATE, tiny_tokenizer

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(config), tok


def train(ckpt_dir: Path, out: Path, resume: bool, slow: bool = False, max_steps: int = 7) -> None:
    from trainforge.posttrain.grpo_config import GrpoConfig
    from trainforge.posttrain.grpo_loop import encode_prompts, grpo_fit
    from trainforge.posttrain.rewards import Reward
    from trainforge.train.config import LoopConfig

    torch.set_num_threads(1)
    model, tok = build()
    if slow:  # give the killer a window in the middle of training
        model.register_forward_hook(lambda *a: time.sleep(0.01))
    loop = LoopConfig(max_steps=max_steps, lr=5e-3, checkpoint_every=1, keep_checkpoints=100, resume=resume,
                      grad_accum=2, schedule={"warmup_ratio": 0.1, "decay": "cosine"})
    grpo = GrpoConfig(group_size=4, prompts_per_step=2, iterations=2, max_new_tokens=6, beta=0.05, loss_type="grpo")
    prompts = encode_prompts([{"prompt": p, "id": i} for i, p in enumerate(PROMPTS)], tok, "prompt", 64)
    grpo_fit(model, tok, prompts, loop, grpo, seed=11, rewards=[Reward("letter_e", letter_e)], checkpoint_dir=ckpt_dir)
    torch.save(model.state_dict(), out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    train(Path(sys.argv[1]), Path(sys.argv[2]), "--resume" in sys.argv, "--slow" in sys.argv)
