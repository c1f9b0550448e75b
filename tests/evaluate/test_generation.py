"""BLEU against sacrebleu, ROUGE with CJK text (where rouge-score's default tokenizer drops everything)."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from trainforge.evaluate.generation import (
    CjkAwareTokenizer,
    bleu,
    exact_match,
    generation_metrics,
    perplexity,
    rouge,
)

ZH_REFS = ["今天天气很好，我们去公园散步。", "这本书的内容非常精彩。"]
ZH_HYPS = ["今天天气不错，我们去公园散步。", "这本书内容很精彩。"]
EN_REFS = ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog"]
EN_HYPS = ["the cat is on the mat", "the quick brown fox jumped over a lazy dog"]


def test_bleu_uses_sacrebleus_zh_tokenizer_for_chinese():
    ours = bleu(ZH_HYPS, ZH_REFS)
    assert ours["bleu_tokenizer"] == "zh"
    assert ours["bleu"] == pytest.approx(sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="zh").score)
    # what a naive call gives: whole sentences as single tokens, a meaningless 0
    assert sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS]).score == pytest.approx(0.0)
    assert 20 < ours["bleu"] < 90


def test_bleu_matches_sacrebleu_default_on_english():
    ours = bleu(EN_HYPS, EN_REFS)
    assert ours["bleu_tokenizer"] == "13a"
    assert ours["bleu"] == pytest.approx(sacrebleu.corpus_bleu(EN_HYPS, [EN_REFS]).score)


def test_rouge_default_tokenizer_silently_drops_chinese_and_ours_does_not():
    default = rouge_scorer.RougeScorer(["rouge1"]).score("我爱北京", "我爱上海")
    assert default["rouge1"].fmeasure == 0.0  # the bug this module exists for
    scores = rouge(["我爱上海"], ["我爱北京"])
    # characters: 我 爱 上 海 vs 我 爱 北 京 → 2 of 4 unigrams match; bigram 我爱 1 of 3; LCS 2
    assert scores["rouge1"] == pytest.approx(0.5)
    assert scores["rouge2"] == pytest.approx(1 / 3)
    assert scores["rougeL"] == pytest.approx(0.5)


def test_rouge_mixed_script_keeps_latin_words_whole():
    assert CjkAwareTokenizer().tokenize("用 PyTorch 训练 BERT-base 模型 2024") == ["用", "pytorch", "训", "练", "bert", "base", "模", "型", "2024"]


def test_rouge_equals_rouge_score_default_on_english():
    ref = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    ours = rouge(EN_HYPS, EN_REFS)
    for key in ("rouge1", "rouge2", "rougeL"):
        expected = sum(ref.score(r, h)[key].fmeasure for h, r in zip(EN_HYPS, EN_REFS)) / len(EN_REFS)
        assert ours[key] == pytest.approx(expected)


def test_exact_match_normalises_width_space_and_case():
    assert exact_match(["ＡＢＣ  好", "x"], ["abc 好", "y"]) == 0.5


def test_perplexity_and_bundle():
    assert perplexity(10 * math.log(4), 10) == pytest.approx(4.0)
    m = generation_metrics(ZH_HYPS, ZH_REFS)
    assert set(m) == {"bleu", "bleu_tokenizer", "rouge1", "rouge2", "rougeL", "exact_match"}
