"""Tiny causal LMs for the post-training tests: a chat Llama built once per session (GRPO, distillation), and a
2-layer, 16-wide Llama with a BPE trained on toy reviews plus preference pairs (DPO). No download."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tests.serve.tiny_models import build_tiny_llama

GOOD = ["great", "lovely", "happy", "superb", "fine"]
BAD = ["awful", "broken", "sad", "poor", "ugly"]


def review_rows(n: int = 32, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(GOOD if i % 2 else BAD, k=rng.randrange(1, 6)) + rng.choices(["the", "item", "was"], k=rng.randrange(1, 4))
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "text": " ".join(words), "label": "pos" if i % 2 else "neg"})
    return rows


def make_tokenizer(rows):
    from trainforge.models.tokenizer import CHAT_TEMPLATE, train_bpe

    tok = train_bpe((r["text"] for r in rows), 300, 1, 64, family="llama")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_lm(tok, seed: int = 0, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = dict(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
               intermediate_size=32, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, attention_dropout=0.0)
    cfg.update(kw)
    return LlamaForCausalLM(LlamaConfig(**cfg))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture()
def llama(llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(llama_dir).eval(), AutoTokenizer.from_pretrained(llama_dir)
