"""`trainforge distill-traces` against a real local `trainforge serve` teacher.

The teacher is a tiny Llama trained in the fixture (a few seconds) to answer every prompt with one fixed trace,
"<think>2 + 2 = 4</think><answer>4</answer>", so greedy decoding makes it deterministic for real: prompts whose
reference is 4 pass the exact_answer reward, the others fail. The filter is checked on both, then resumption
after an interruption (a budget-limited run, and a torn last line as a kill mid-write leaves), a dead endpoint
(retried on the next run), and that the kept records are SFT records the SFT task encodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.serve.servers import start_server
from tests.serve.tiny_models import CHAT_TEMPLATE, tiny_tokenizer

TRACE = "<think>2 + 2 = 4</think><answer>4</answer>"
PROMPTS = [("What is 2 plus 2?", "4"), ("2 + 2 = ?", "5"), ("hello world, what is two and two", "4"),
           ("the lazy dog asks: 2+2", "5"), ("kv cache: add 2 and 2", "4"), ("how are you? 2 plus 2", "5")]


def _train_teacher(path: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(config)
    answer = tok(TRACE, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    seqs, labels = [], []
    for p, _ in PROMPTS + [("anything else", ""), ("质量太差了", "")]:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                      return_dict=False)
        seqs.append(ids + answer)
        labels.append([-100] * len(ids) + answer)
    width = max(map(len, seqs))
    x = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    y = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
    mask = (torch.arange(width)[None] < torch.tensor([len(s) for s in seqs])[:, None]).long()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = model(input_ids=x, attention_mask=mask, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    return _train_teacher(tmp_path_factory.mktemp("teacher") / "teacher")


@pytest.fixture(scope="module")
def teacher(teacher_dir):
    server, _ = start_server(str(teacher_dir))
    yield server.url + "/v1"
    server.stop()


@pytest.fixture()
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p, "reference": r}) + "\n"
                            for i, (p, r) in enumerate(PROMPTS)))
    return path


def _run(prompts: Path, out: Path, url: str, *extra: str) -> int:
    from trainforge.cli import main

    return main(["distill-traces", str(prompts), "-o", str(out), "--base-url", url, "--temperature", "0",
                 "--max-tokens", "64", "--concurrency", "3", "--reward", "exact_answer", "--reward", "think_format",
                 "--min-reward", "2", *extra])


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_keeps_only_the_verified_traces_as_sft_records(teacher, teacher_dir, prompts, tmp_path):
    out = tmp_path / "out"
    assert _run(prompts, out, teacher) == 0
    kept, rejected = _read(out / "traces.jsonl"), _read(out / "rejected.jsonl")
    assert sorted(r["id"] for r in kept) == ["q0", "q2", "q4"]  # reference 4: the teacher's answer verifies
    assert sorted(r["id"] for r in rejected) == ["q1", "q3", "q5"]
    assert all(r["reason"] == "failed_reward" and r["rewards"]["exact_answer"] == 0.0 for r in rejected)
    for r in kept:
        assert r["response"] == TRACE and r["rewards"] == {"exact_answer": 1.0, "think_format": 1.0}
        assert r["reference"] == "4" and r["teacher"] == "teacher"
    cursor = json.loads((out / "cursor.json").read_text())
    assert (cursor["processed"], cursor["kept"], cursor["rejected"], cursor["failed"]) == (6, 3, 3, 0)

    # the records are what the SFT task trains on: the data stage's reader, then SFTTask's encoding
    from transformers import AutoTokenizer

    from trainforge.data.config import SourceConfig
    from trainforge.data.io import read_source
    from trainforge.tasks import SFTTask

    rows = [rec.to_json() for rec in read_source(SourceConfig(path=str(out / "traces.jsonl"), prompt_field="prompt",
                                                              label_field=None))]
    assert [r["response"] for r in rows] == [TRACE] * 3
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    enc = SFTTask().encode(rows, tok)
    assert all(tok.decode([t for t in lab if t != -100], skip_special_tokens=True) == TRACE for lab in enc.token_labels)


def test_resumes_after_an_interruption_without_asking_twice(teacher, prompts, tmp_path):
    out = tmp_path / "out"
    assert _run(prompts, out, teacher, "--limit", "2") == 0  # interrupted after 2 prompts (a budget)
    assert json.loads((out / "cursor.json").read_text())["processed"] == 2
    with open(out / "traces.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": "q9", "prompt": "half a li')  # a kill in the middle of a write
    assert _run(prompts, out, teacher) == 0
    kept, rejected = _read(out / "traces.jsonl"), _read(out / "rejected.jsonl")
    ids = [r["id"] for r in kept + rejected]
    assert sorted(ids) == [f"q{i}" for i in range(6)]  # each prompt exactly once; the torn line is gone
    assert sorted(r["id"] for r in kept) == ["q0", "q2", "q4"]
    assert json.loads((out / "cursor.json").read_text())["processed"] == 6


def test_a_dead_endpoint_counts_failures_and_marks_nothing_done(prompts, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    assert _run(prompts, out, f"http://127.0.0.1:{port}/v1", "--model", "teacher", "--retries", "0") == 0
    cursor = json.loads((out / "cursor.json").read_text())
    assert (cursor["processed"], cursor["failed"]) == (0, 6) and "APIConnectionError" in cursor["last_error"]
    assert (out / "traces.jsonl").read_text() == ""
