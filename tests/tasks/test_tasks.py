"""Each task through the Task protocol: records → encode → batch → the loss falls → validate/predict → saved and
described in model/trainforge.json, from which later stages rebuild the same task."""

from __future__ import annotations

import json
import random

import pytest
import torch

from trainforge.errors import UserError
from trainforge.tasks import (TASKS, CausalLMTask, ClassificationTask, ModelSpec, SFTTask, read_model_info, task_for,
                              write_model_info)
from trainforge.tasks.info import ModelInfo, PromptFormat
from trainforge.train.config import LoopConfig
from trainforge.train.loop import fit

GOOD = ["great", "lovely", "superb", "fine", "happy"]
BAD = ["awful", "broken", "sad", "poor", "ugly"]


def review_rows(n: int = 64, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(GOOD if i % 2 else BAD, k=rng.randrange(2, 6)) + rng.choices(["the", "item", "was"], k=2)
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "text": " ".join(words), "label": "pos" if i % 2 else "neg"})
    return rows


def tokenizer_for(rows, family="llama"):
    from trainforge.models.tokenizer import train_bpe

    return train_bpe((r.get("text") or r.get("prompt", "") for r in rows), 300, 1, 64, family=family)


def loop_cfg(**kw) -> LoopConfig:
    base = dict(epochs=1, max_steps=30, batch_size=16, lr=3e-3, eval_every=30, schedule={"warmup_ratio": 0.0})
    return LoopConfig(**{**base, **kw})


def spec(**kw) -> ModelSpec:
    return ModelSpec("llama-tiny", 64, 0.0, overrides={}, **kw)


TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=32)


def first_and_last_loss(result) -> tuple[float, float]:
    losses = [h["loss"] for h in result.history]
    return sum(losses[:5]) / 5, sum(losses[-5:]) / 5


def test_registry_names_every_task():
    assert set(TASKS) >= {"classification", "causal_lm", "sft"}
    for name, cls in TASKS.items():
        assert cls.name == name and cls.serves_as in ("classifier", "generator", "embedder")  # embedder: clip


def test_classification_task_end_to_end(tmp_path):
    torch.manual_seed(0)
    rows = review_rows()
    task = ClassificationTask.from_rows(rows, max_length=64)
    assert task.labels == ["neg", "pos"]
    tok = tokenizer_for(rows)
    enc = task.encode(rows, tok)
    batch = task.batch(enc, [0, 1, 2], tok.pad_token_id)
    assert batch["labels"].tolist() == [0, 1, 0] and batch["input_ids"].shape[0] == 3
    model = task.build_model(ModelSpec("llama-tiny", 64, 0.0, overrides=TINY), tok)
    result = fit(model, enc, enc, loop_cfg(), tok.pad_token_id, 0, task=task)
    first, last = first_and_last_loss(result)
    assert last < first
    scores = task.validate(model, enc, tok.pad_token_id)
    assert scores["val_accuracy"] > 0.9 and result.best["val_accuracy"] == pytest.approx(scores["val_accuracy"], abs=1e-4)

    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    write_model_info(tmp_path, task.model_info(ModelSpec("llama-tiny", 64), model, "full", adapter=False))
    again, info = task_for(tmp_path)
    assert isinstance(again, ClassificationTask) and again.labels == task.labels and info.family == "llama"
    assert info.architecture == "LlamaForSequenceClassification" and not info.derived
    reloaded = again.load_model(tmp_path)
    assert again.validate(reloaded, enc, tok.pad_token_id)["val_accuracy"] == pytest.approx(scores["val_accuracy"])


def test_classification_refuses_unseen_held_out_labels():
    rows = review_rows(8)
    task = ClassificationTask.from_rows(rows, 64)
    tok = tokenizer_for(rows)
    with pytest.raises(UserError, match="absent from training"):
        task.encode([{"id": "x", "text": "great", "label": "meh"}], tok, held_out=True)
    assert task.encode([{"id": "x", "text": "great", "label": "meh"}], tok).labels == [-100]


def test_causal_lm_task_packs_and_learns(tmp_path):
    torch.manual_seed(0)
    rows = [{"text": " ".join(str(i % 10) for i in range(k, k + 30))} for k in range(40)]
    tok = tokenizer_for(rows)
    task = CausalLMTask(seq_len=16)
    enc = task.encode(rows, tok)
    assert all(len(b) == 16 for b in enc.input_ids) and enc.token_labels == enc.input_ids  # packed: no padding
    assert task.predicted_tokens(enc) == [15] * len(enc)
    model = task.build_model(ModelSpec("llama-tiny", 16, 0.0, overrides=TINY), tok)
    before = task.validate(model, enc, tok.pad_token_id)["val_loss"]
    result = fit(model, enc, enc, loop_cfg(max_steps=40, eval_every=40), tok.pad_token_id, 0, task=task)
    after = task.validate(model, enc, tok.pad_token_id)
    assert after["val_loss"] < before and after["val_perplexity"] == pytest.approx(torch.tensor(after["val_loss"]).exp().item())
    assert result.best["val_loss"] == pytest.approx(after["val_loss"], abs=1e-4)

    model.save_pretrained(tmp_path)
    write_model_info(tmp_path, task.model_info(ModelSpec("llama-tiny", 16), model, "pretrain", adapter=False))
    again, info = task_for(tmp_path)
    assert isinstance(again, CausalLMTask) and again.seq_len == 16 and again.serves_as == "generator"


def test_sft_task_masks_the_prompt_and_keeps_its_prompt_format(tmp_path):
    torch.manual_seed(0)
    rows = review_rows(48)
    fmt = PromptFormat(template="Sentiment of: {text}", label_names={"pos": "positive", "neg": "negative"}, max_new_tokens=4)
    task = SFTTask(fmt, max_length=64, sample_count=4)
    tok = tokenizer_for(rows + [{"text": "positive negative Sentiment of:"}])
    task.prepare_tokenizer(tok)
    enc = task.encode(rows, tok)
    for ids, targets, row in zip(enc.input_ids, enc.token_labels, rows):
        answer = [t for t in targets if t != -100]
        assert tok.decode(answer, skip_special_tokens=True).strip() == fmt.label_names[row["label"]]
        assert len(ids) == len(targets) and targets[0] == -100
    model = task.build_model(ModelSpec("llama-tiny", 64, 0.0, overrides=TINY), tok)
    result = fit(model, enc, enc, loop_cfg(max_steps=40, eval_every=40), tok.pad_token_id, 0, task=task)
    first, last = first_and_last_loss(result)
    assert last < first
    samples = task.samples(model, tok, rows)
    assert len(samples) == 4 and {"prompt", "expected", "generated"} <= set(samples[0])
    model.save_pretrained(tmp_path)
    metrics = task.write_samples(samples, tmp_path)
    assert metrics["generated"] == 4 and (tmp_path / "generations.jsonl").is_file()
    write_model_info(tmp_path, task.model_info(ModelSpec("llama-tiny", 64), model, "full", adapter=False))
    again, info = task_for(tmp_path)
    assert isinstance(again, SFTTask) and again.fmt == fmt and info.prompt_format == fmt


def test_model_info_is_derived_for_a_folder_without_one(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

    clf = tmp_path / "clf"
    BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=32, num_labels=2, id2label={0: "a", 1: "b"},
                                             label2id={"a": 0, "b": 1})).save_pretrained(clf)
    info = read_model_info(clf)
    assert info.derived and info.task == "classification" and info.labels == ["a", "b"]
    lm = tmp_path / "lm"
    LlamaForCausalLM(LlamaConfig(vocab_size=50, **TINY)).save_pretrained(lm)
    assert read_model_info(lm).task == "causal_lm"


def test_bad_model_info_is_a_user_error(tmp_path):
    (tmp_path / "trainforge.json").write_text(json.dumps({"format": 1, "task": "classification", "colour": "red"}))
    with pytest.raises(UserError, match="unknown keys colour"):
        read_model_info(tmp_path)
    (tmp_path / "trainforge.json").write_text(json.dumps({"format": 1, "task": "telepathy"}))
    with pytest.raises(UserError, match="task 'telepathy'"):
        task_for(tmp_path)


def test_model_info_round_trips(tmp_path):
    info = ModelInfo("sft", "llama", "LlamaForCausalLM", max_length=32, prompt_format=PromptFormat(template="Q: {text}"),
                     method="lora", adapter=True)
    write_model_info(tmp_path, info)
    assert read_model_info(tmp_path) == info
    assert "derived" not in json.loads((tmp_path / "trainforge.json").read_text())
