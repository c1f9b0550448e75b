"""Tiny BERT- and Llama-style classifiers built from configs, tiny token data, and a tiny run dir."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from tests.conftest import make_reviews

VOCAB = 64


def tiny_bert(seed: int = 0, layers: int = 2, vocab: int = VOCAB):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2, pad_token_id=0,
                     id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    return BertForSequenceClassification(cfg).eval()


def tiny_llama(seed: int = 0, kv_heads: int = 2, vocab: int = VOCAB):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=kv_heads, intermediate_size=64, max_position_embeddings=64,
                      num_labels=2, pad_token_id=0, id2label={0: "negative", 1: "positive"},
                      label2id={"negative": 0, "positive": 1})
    return LlamaForSequenceClassification(cfg).eval()


def token_data(n: int, seed: int = 0):
    """Encoded examples whose label says whether token 7 occurs: learnable in a few steps."""
    from trainforge.train.loop import Encoded

    rng = random.Random(seed)
    ids, labels = [], []
    for i in range(n):
        seq = [rng.randrange(8, VOCAB) for _ in range(rng.randint(4, 16))]
        if i % 2:
            seq[rng.randrange(len(seq))] = 7
        ids.append([1] + seq + [2])
        labels.append(i % 2)
    return Encoded(ids, labels)


def batch_of(enc, n: int = 8):
    from trainforge.train.loop import collate

    return collate(enc, list(range(n)), 0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run directory as the train stage leaves it: data/, model/ (BERT, HF format, tokenizer inside)."""
    return make_run(tmp_path_factory.mktemp("runs"), tiny_bert)


@pytest.fixture(scope="session")
def tiny_llama_run(tmp_path_factory) -> Path:
    """The same with a Llama-style classifier (what the quickstart is moving to)."""
    return make_run(tmp_path_factory.mktemp("runs"), tiny_llama)


def make_run(root: Path, build) -> Path:
    from trainforge.models.tokenizer import train_bpe

    run = root / "tiny"
    (run / "data").mkdir(parents=True)
    rows = make_reviews(200, seed=3)
    for i, r in enumerate(rows):
        r["id"] = f"r{i}"
    splits = {"train": rows[:120], "val": rows[120:160], "test": rows[160:]}
    for name, part in splits.items():
        (run / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part))
    tok = train_bpe([r["text"] for r in splits["train"]], vocab_size=VOCAB, min_frequency=1, max_length=32)
    model = build(seed=1, vocab=len(tok))
    model.save_pretrained(run / "model")
    tok.save_pretrained(run / "model")
    (run / "config.resolved.yaml").write_text(
        f"name: tiny\nseed: 7\nruns_dir: {root}\ntracking: {{enabled: false}}\n", encoding="utf-8")
    return run
