"""Tiny Chinese data, a character-level tokenizer and a 2-layer BERT trained to depend on one character.

The label is "positive" iff 好 occurs. 号/浩/豪/毫 (homophones of 好: hao) occur in both classes,
so the model learns they mean nothing: swapping 好 for one of them must flip the prediction.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

SIGNAL = "好"
NEUTRAL = list("这个东西我们买了书店酒房间服务质量价格物流包装内容号浩豪毫")
LABELS = ["negative", "positive"]


def make_rows(n: int, seed: int, prefix: str = "x") -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        chars = rng.choices(NEUTRAL, k=rng.randint(24, 34))
        label = LABELS[i % 2]
        if label == "positive":
            chars.insert(rng.randrange(len(chars) + 1), SIGNAL)
        rows.append({"id": f"{prefix}{i}", "text": "".join(chars), "label": label, "source": ["shop", "hotel"][i % 3 == 0],
                     "domain": ["books", "food"][i % 4 == 0]})
    return rows


def char_tokenizer(max_length: int = 64):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(NEUTRAL + [SIGNAL])))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\S"), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)


def train_tiny_bert(tokenizer, rows: list[dict], steps: int = 120):
    from transformers import BertConfig, BertForSequenceClassification

    from trainforge.train.loop import Encoded, collate

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=0, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, num_labels=2, id2label=dict(enumerate(LABELS)),
                     label2id={lab: i for i, lab in enumerate(LABELS)})
    model = BertForSequenceClassification(cfg)
    enc = Encoded(tokenizer([r["text"] for r in rows])["input_ids"], [LABELS.index(r["label"]) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        loss = model(**collate(enc, rng.sample(range(len(enc)), 32), 0)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer, train_rows): trained once per test session (a few seconds)."""
    torch.set_num_threads(1)
    tokenizer = char_tokenizer()
    train = make_rows(240, seed=1, prefix="tr")
    return train_tiny_bert(tokenizer, train), tokenizer, train


def write_run(root: Path, name: str, tiny, n_test: int = 40, eval_section: dict | None = None) -> Path:
    """A run directory as the data and train stages leave it: data/*.jsonl, model/, config.resolved.yaml."""
    import yaml

    model, tokenizer, train = tiny
    run = root / name
    (run / "data").mkdir(parents=True)
    for split, rows in {"train": train, "val": make_rows(20, 2, "va"), "test": make_rows(n_test, 3, "te")}.items():
        (run / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    model.save_pretrained(run / "model")
    tokenizer.save_pretrained(run / "model")
    cfg = {"name": name, "seed": 0, "runs_dir": str(root), "tracking": {"enabled": False},
           "eval": eval_section or {"slice_fields": ["domain"], "attention_examples": 2,
                                    "adversarial": {"samples": 8, "perturbation_samples": 20, "min_sentence_similarity": 0.3}}}
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return run
