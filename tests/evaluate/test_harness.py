"""The lm-evaluation-harness bridge scores a run's causal LM on a local task file, offline."""

from __future__ import annotations

import json

import pytest
import torch

from trainforge.cli import main

from .conftest import char_tokenizer, make_rows, write_run

pytest.importorskip("lm_eval")

TASK = """task: tiny_sentiment
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{text}}}}"
doc_to_choice: ["差", "好"]
doc_to_target: "{{{{label_idx}}}}"
metric_list:
  - metric: acc
"""


@pytest.fixture
def lm_run(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = char_tokenizer()
    tok.bos_token, tok.eos_token = "[CLS]", "[SEP]"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=32, max_position_embeddings=128,
                                         pad_token_id=0, bos_token_id=2, eos_token_id=3))
    run = write_run(tmp_path, "lm", (model, tok, make_rows(20, seed=1)), n_test=4)
    docs = [{"text": r["text"], "label_idx": int(r["label"] == "positive")} for r in make_rows(6, seed=7)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "tiny.yaml").write_text(TASK.format(data=tmp_path / "docs.jsonl"), encoding="utf-8")
    return run, tmp_path / "tasks"


def test_lm_eval_bridge_scores_local_task(lm_run, capsys):
    run, tasks = lm_run
    assert main(["eval", str(run), "--lm-eval", str(tasks), "--lm-eval-limit", "5"]) == 0
    res = json.loads((run / "eval" / "lm_eval.json").read_text())
    acc = res["tasks"]["tiny_sentiment"]["acc,none"]
    assert 0.0 <= acc <= 1.0 and res["limit"] == 5
    assert "lm-eval tiny_sentiment" in capsys.readouterr().out
    assert "lm-evaluation-harness" in (run / "report.html").read_text()


def test_lm_eval_unknown_task_is_a_user_error(lm_run, capsys):
    run, tasks = lm_run
    assert main(["eval", str(run), "--lm-eval", str(tasks), "--lm-eval-tasks", "nope"]) == 2
    assert "nope not defined" in capsys.readouterr().err
