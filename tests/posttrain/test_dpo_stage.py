"""train.task: dpo end to end through the runner: SFT phase → pairs from labels → DPO → eval beside SFT → serve."""

from __future__ import annotations

import json

import httpx
import pytest

from trainforge.config import validate_config
from trainforge.errors import UserError
from trainforge.run import run_pipeline

POS = ["房间很干净，服务很好", "质量不错，很满意", "快递很快，好评", "这本书写得很好", "性价比高，推荐"]
NEG = ["质量太差了，不推荐", "服务态度很差", "房间又脏又旧", "等了很久才到，失望", "书的印刷很差"]
LABELS = {"positive": "正面", "negative": "负面"}


def _write_splits(root, rows_per_split=(("train", 40), ("val", 8), ("test", 10))):
    data = root / "tiny" / "data"
    data.mkdir(parents=True)
    for split, n in rows_per_split:
        rows = [{"id": f"{split}{i}", "text": (POS if i % 2 else NEG)[i % 5] + "。" * (i % 3),
                 "label": "positive" if i % 2 else "negative"} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _config(root, dpo=None, eval_split="test", **train):
    return validate_config({
        "name": "tiny", "runs_dir": str(root), "tracking": {"enabled": False},
        "train": {"task": "dpo", "model": "llama-tiny", "tokenizer": {"vocab_size": 300, "min_frequency": 1},
                  "max_length": 48, "max_steps": 4, "batch_size": 8, "lr": 1e-3, "eval_every": 2, "log_every": 1000,
                  "threads": 1, "dropout": 0.0,
                  "sft": {"template": "这条评论是正面还是负面？{text}", "label_names": LABELS, "generate_examples": 4,
                          "max_new_tokens": 3},
                  "dpo": {"sft_epochs": 1, "beta": 0.1, **(dpo or {})}, **train},
        **({"eval": {"split": eval_split, "generate_examples": 10}} if eval_split else {}),
    })


@pytest.mark.slow
def test_sft_then_dpo_then_eval_beside_sft_then_serve(tmp_path):
    from tests.serve.servers import start_server

    _write_splits(tmp_path)
    result = run_pipeline(_config(tmp_path))
    rd = tmp_path / "tiny"
    assert result.ran == ["train", "eval"]
    m = result.metrics["train"]
    assert m["pairs"] == 40 and m["val_pairs"] == 8 and m["steps"] == 4 and m["sft_steps"] == 5
    state = json.loads((rd / "model" / "trainer_state.json").read_text())
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
            "logps/rejected", "loss"} <= set(state["log_history"][0])
    assert state["log_history"][0]["loss"] == pytest.approx(0.693147, abs=1e-4)  # log 2: policy = reference at step 1
    assert (rd / "checkpoints" / "train" / "reference_logps.pt").is_file()
    info = json.loads((rd / "model" / "trainforge.json").read_text())
    assert info["task"] == "dpo" and info["prompt_format"]["label_names"] == LABELS
    assert (rd / "model" / "reference" / "config.json").is_file()

    metrics = json.loads((rd / "eval" / "metrics.json").read_text())
    block = metrics["label_answers"]
    assert block["n"] == 10 and set(block) >= {"dpo", "sft_reference", "majority_baseline"}
    assert block["majority_baseline"]["label_answer_accuracy"] == 0.5  # 5 of each label in test
    assert metrics["headline"] == "label_answer_accuracy"
    answers = [json.loads(line) for line in (rd / "eval" / "preference_answers.jsonl").read_text().splitlines()]
    assert len(answers) == 10 and all(a["sft"] is not None for a in answers)

    from trainforge.train.report import training

    html = training(rd)
    assert "method full" in html and "rewards/margins" in html

    server, _ = start_server(str(rd / "model"))  # the DPO model serves through the OpenAI API unchanged
    try:
        r = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "model", "max_tokens": 3, "temperature": 0,
                       "messages": [{"role": "user", "content": "好"}]}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["role"] == "assistant"
    finally:
        server.stop()


def test_given_pairs_train_reference_free_orpo_with_lora(tmp_path):
    data = tmp_path / "tiny" / "data"
    data.mkdir(parents=True)
    for split, n in (("train", 12), ("val", 4)):
        rows = [{"id": f"{split}{i}", "prompt": [{"role": "user", "content": f"问题{i}好吗"}],
                 "chosen": [{"role": "assistant", "content": "很好"}], "rejected": "不好"} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    result = run_pipeline(_config(tmp_path, dpo={"pairs": "given", "loss": "orpo", "sft_epochs": 0}, method="lora",
                                  lora={"r": 4}, eval_every=None, eval_split=None))
    m = result.metrics["train"]
    assert m["pairs"] == 12 and m["trainable_parameters"] < m["parameters"]
    assert not (tmp_path / "tiny" / "checkpoints" / "train" / "reference_logps.pt").exists()  # orpo needs no reference
    assert (tmp_path / "tiny" / "adapter" / "adapter_config.json").is_file()


def test_unfreeze_and_bad_pairs_are_user_errors(tmp_path):
    _write_splits(tmp_path)
    with pytest.raises(UserError, match="unfreeze"):
        run_pipeline(_config(tmp_path, method="unfreeze"))
    with pytest.raises(UserError, match="prompt"):
        run_pipeline(_config(tmp_path, dpo={"pairs": "given", "sft_epochs": 0}))
    with pytest.raises(Exception, match="judge"):
        _config(tmp_path, dpo={"pairs": "samples"})
