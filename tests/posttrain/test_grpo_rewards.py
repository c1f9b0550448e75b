"""Built-in rewards, reward functions by dotted path, and the arithmetic built-in's records."""

from __future__ import annotations

import re

import pytest

from trainforge.data.arithmetic import arithmetic_records
from trainforge.errors import UserError
from trainforge.posttrain.rewards import (
    exact_answer,
    final_answer,
    label_match,
    length_penalty,
    load_reward,
    think_format,
)


def test_final_answer_prefers_boxed_then_answer_tags_then_the_last_number():
    assert final_answer("3 + 4 = 7, so \\boxed{7} (not 8)") == "7"
    assert final_answer("<think>2 * 6 = 12, maybe 13</think><answer>12</answer>") == "12"
    assert final_answer("I count 3, then 5, then 9") == "9"
    assert final_answer("no digits") is None


def test_exact_answer_is_numeric_and_none_without_a_reference():
    got = exact_answer(["q"] * 5, ["<answer>12</answer>", "12.0", "1,200", "<answer>13</answer>", "x"],
                       reference=["12", "12", "1200", "12", None])
    assert got == [1.0, 1.0, 1.0, 0.0, None]


def test_label_match_reads_the_answer_tag_or_the_whole_completion():
    got = label_match(["q"] * 4, ["<think>好</think><answer>正面</answer>", " 负面 ", "正面的", "负面"],
                      label=["正面", "负面", "正面", None])
    assert got == [1.0, 1.0, 0.0, None]


def test_format_and_length():
    assert think_format([""] * 3, ["<think>a</think><answer>b</answer>", "<answer>b</answer>", "<think>a</think> b"]) == [1.0, 0.0, 0.0]
    assert length_penalty([""] * 3, ["x" * 10, "x" * 15, "x" * 40], max_chars=10) == [0.0, -0.5, -1.0]


def test_rewards_load_by_short_name_or_dotted_path():
    assert load_reward("exact_answer") is exact_answer
    assert load_reward("trainforge.posttrain.rewards:think_format") is think_format
    assert load_reward("trainforge.posttrain.rewards.label_match") is label_match
    with pytest.raises(UserError, match="cannot load"):
        load_reward("trainforge.posttrain.rewards:nope")
    with pytest.raises(UserError, match="neither a built-in"):
        load_reward("nope")


def test_arithmetic_is_seeded_bilingual_and_its_answers_are_right():
    rows = list(arithmetic_records(400))
    assert rows == list(arithmetic_records(400))
    assert {r["lang"] for r in rows} == {"en", "zh"} and {r["op"] for r in rows} == {"add", "mul"}
    for r in rows:
        a, sign, b, answer = re.match(r"<think>(\d+) ([+*]) (\d+) = (\d+)</think>", r["response"]).groups()
        assert int(answer) == (int(a) + int(b) if sign == "+" else int(a) * int(b)) == int(r["reference"])
        assert a in r["prompt"] and b in r["prompt"]
        assert exact_answer([r["prompt"]], [r["response"]], reference=[r["reference"]]) == [1.0]
        assert think_format([r["prompt"]], [r["response"]]) == [1.0]


def test_arithmetic_is_a_builtin_source_of_prompt_records():
    from trainforge.data.config import SourceConfig
    from trainforge.data.io import read_source

    recs = list(read_source(SourceConfig(builtin="arithmetic", label_field=None, limit=5)))
    assert len(recs) == 5
    first = next(arithmetic_records(1))
    assert recs[0].prompt == first["prompt"] and recs[0].reference == first["reference"]
    assert recs[0].to_json()["response"] == first["response"]


def test_reviews_become_prompts_answered_by_label():
    from trainforge.posttrain.grpo_loop import frame_labelled

    rows = frame_labelled([{"text": "房间很干净", "label": "positive"}, {"prompt": "2+2?", "reference": "4"}], "prompt",
                          "这条评论是正面还是负面？\n{text}", {"positive": "正面", "negative": "负面"})
    assert rows[0]["prompt"] == "这条评论是正面还是负面？\n房间很干净" and rows[0]["reference"] == "正面"
    assert rows[1] == {"prompt": "2+2?", "reference": "4"}
    completions = ["<think>干净</think><answer>正面</answer>", "负面"]
    assert label_match([r["prompt"] for r in rows], completions, reference=["正面", "正面"]) == [1.0, 0.0]
