"""train.task=grpo end to end on the arithmetic built-in: data → SFT phase → GRPO → eval, then the model serves
through the OpenAI API unchanged. Checks the files written and the per-step metrics' names."""

from __future__ import annotations

import json

import pytest

from trainforge.config import validate_config
from trainforge.run import run_pipeline

STEP_METRICS = {"reward", "reward_std", "frac_reward_zero_std", "rewards/exact_answer/mean", "rewards/think_format/mean",
                "completions/mean_length", "completions/min_length", "completions/max_length",
                "completions/clipped_ratio", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean",
                "clip_ratio/region_mean", "generation_share", "loss", "lr"}


@pytest.mark.slow
def test_sft_then_grpo_then_eval_then_serve(tmp_path):
    cfg = validate_config({
        "name": "g", "runs_dir": str(tmp_path), "tracking": {"enabled": False}, "seed": 0,
        "data": {"sources": [{"builtin": "arithmetic", "label_field": None, "limit": 60}],
                 "dedup": {"near": None}, "decontaminate": None,  # templated problems share n-grams by design
                 "split": {"val": 0.1, "test": 0.1, "stratify": False}},
        "train": {"task": "grpo", "model": "llama-tiny", "tokenizer": {"vocab_size": 400}, "max_length": 80,
                  "batch_size": 8, "lr": 1e-3, "dropout": 0.0, "max_steps": 2, "log_every": 1000,
                  "grpo": {"sft_steps": 3, "group_size": 2, "prompts_per_step": 2, "max_new_tokens": 8,
                           "iterations": 2, "beta": 0.02, "eval_prompts": 4, "eval_samples": 2}},
        "eval": {"split": "test"},
    })
    result = run_pipeline(cfg)
    rd = tmp_path / "g"
    assert result.ran == ["data", "train", "eval"]
    info = json.loads((rd / "model" / "trainforge.json").read_text())
    assert info["task"] == "grpo"
    assert json.loads((rd / "model" / "sft" / "trainforge.json").read_text())["task"] == "sft"
    state = json.loads((rd / "model" / "trainer_state.json").read_text())
    assert len(state["log_history"]) == 4 and state["updates"] == 4  # 2 rounds × μ = 2
    assert STEP_METRICS <= set(state["log_history"][0])
    assert state["log_history"][1]["generation_seconds"] == 0  # μ's second update reuses the round's rollouts
    metrics = json.loads((rd / "eval" / "metrics.json").read_text())
    assert metrics["task"] == "grpo" and metrics["n"] == 4 and metrics["baseline"]["exact_match"] <= 0.5
    assert {"exact_match", "pass_at_2", "format_rate", "mean_completion_tokens"} <= set(metrics["model"])
    assert {"exact_match", "pass_at_2"} <= set(metrics["sft"]) and metrics["baseline"]["name"] == "majority-answer"
    assert "model_exact_match" in result.metrics["eval"]

    from openai import OpenAI

    from tests.serve.servers import start_server

    server, _ = start_server(str(rd))
    try:
        client = OpenAI(base_url=server.url + "/v1", api_key="unused")
        reply = client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=8, temperature=0,
                                               messages=[{"role": "user", "content": "What is 2 plus 3?"}])
        assert reply.choices[0].message.content is not None and reply.usage.completion_tokens >= 1
    finally:
        server.stop()


def test_the_example_config_is_valid_and_says_what_it_runs():
    from pathlib import Path

    from trainforge.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "grpo.yaml")
    assert cfg.train.task == "grpo" and cfg.train.grpo.sft_steps > 0 and cfg.eval is not None
    assert [r.name for r in cfg.train.grpo.rewards] == ["exact_answer", "think_format"]


def test_virtual_token_methods_are_refused_before_any_work(tmp_path):
    from trainforge.errors import UserError

    cfg = validate_config({"name": "g", "runs_dir": str(tmp_path), "tracking": {"enabled": False},
                           "data": {"sources": [{"builtin": "arithmetic", "label_field": None, "limit": 30}],
                                    "dedup": {"near": None}, "decontaminate": None},
                           "train": {"task": "grpo", "method": "prompt", "model": "llama-tiny"}})
    with pytest.raises(UserError, match="virtual tokens"):
        run_pipeline(cfg)
