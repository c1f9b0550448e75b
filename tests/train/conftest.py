"""Tiny models and data built in fixtures: 2-layer, 16-wide models; 64 synthetic examples."""

from __future__ import annotations

import random

import pytest
import torch

from trainforge.train.loop import Encoded

VOCAB = 40
PAD = 0
SIGNAL = 7  # label 1 iff this token occurs: learnable in a few dozen steps


def make_classification(n: int = 64, seed: int = 0) -> Encoded:
    rng = random.Random(seed)
    ids, labels = [], []
    for i in range(n):
        seq = [rng.randrange(8, VOCAB) for _ in range(rng.randrange(5, 12))]
        if i % 2:
            seq[rng.randrange(len(seq))] = SIGNAL
        ids.append([1] + seq + [2])
        labels.append(i % 2)
    return Encoded(ids, labels)


def make_lm(n: int = 48, length: int = 16, seed: int = 0) -> Encoded:
    """Counting sequences (t, t+1, t+2 …): a causal LM learns them fast."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        start = rng.randrange(3, VOCAB - length)
        blocks.append(list(range(start, start + length)))
    return Encoded(blocks, [0] * n, token_labels=blocks)


def make_sft(n: int = 64, seed: int = 0) -> Encoded:
    """Prompt + response pairs of varied lengths, the loss masked to the response (as train/sft.py builds them):
    micro-batches hold different numbers of target tokens."""
    rng = random.Random(seed)
    ids, targets = [], []
    for _ in range(n):
        prompt = [rng.randrange(8, VOCAB) for _ in range(rng.randrange(2, 14))]
        start = rng.randrange(3, VOCAB - 12)
        response = list(range(start, start + rng.randrange(1, 12)))
        ids.append([1] + prompt + response + [2])
        targets.append([-100] * (1 + len(prompt)) + response + [2])
    return Encoded(ids, [0] * n, token_labels=targets)


def llama_config(**kw):
    from transformers import LlamaConfig

    base = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                intermediate_size=32, max_position_embeddings=64, pad_token_id=PAD, bos_token_id=1, eos_token_id=2,
                num_labels=2, attention_dropout=0.0)
    base.update(kw)
    return LlamaConfig(**base)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def llama_classifier():
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    return LlamaForSequenceClassification(llama_config())


@pytest.fixture
def llama_lm():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config())


@pytest.fixture
def bert_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                    intermediate_size=32, max_position_embeddings=64, pad_token_id=PAD,
                                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2))
