"""Each filter keeps a good document and drops a bad one with its snake_case reason; normalisation steps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainforge.data import config as C
from trainforge.data.filters import STEPS, count_tokens
from trainforge.data.normalize import Normalizer, id_checksum_ok, luhn_ok
from trainforge.data.quality import CharBigramLM, percentile_cut

CASES = [
    # (filter, config, kept example, dropped example, reason)
    ("length", C.LengthFilter(min_chars=2, max_chars=10), "质量不错", "好", "too_short"),
    ("length", C.LengthFilter(min_chars=2, max_chars=10), "质量不错", "质量不错" * 3, "too_long"),
    ("length", C.LengthFilter(min_tokens=3), "质量不错", "ok", "too_few_tokens"),
    ("length", C.LengthFilter(max_tokens=4), "good 质量", "very good 质量不错", "too_many_tokens"),
    ("script_ratio", C.ScriptRatioFilter(script="han", min_ratio=0.5), "屏幕很清晰 LCD", "http://example.com/a.zip", "low_script_ratio"),
    ("symbol_ratio", C.SymbolRatioFilter(), "房间干净，服务好！", "好！！！！！！！！！！", "too_many_symbols"),
    ("symbol_ratio", C.SymbolRatioFilter(), "房间888元", "好88888888888", "too_many_digits"),
    ("repetition", C.RepetitionFilter(min_chars_to_apply=10), "第一行说了房间\n第二行说了早餐\n第三行说了服务",
     "房间很好\n房间很好\n房间很好\n早餐不错", "duplicate_lines"),
    ("repetition", C.RepetitionFilter(min_chars_to_apply=10, max_dup_line_frac=1.0),
     "这本书的内容很丰富，作者写得很用心，值得一读。", "哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈", "top_ngram_repetition"),
    ("repetition", C.RepetitionFilter(min_chars_to_apply=10, max_dup_line_frac=1.0, cjk_top_ngram_frac={}),
     "这本书的内容很丰富，作者写得很用心，值得一读。", "价格便宜量又足送货快价格便宜量又足送货快价格便宜量又足送货快", "duplicate_ngram_repetition"),
    ("terminal_punctuation", C.TerminalPunctuationFilter(), "这本书很好看。\n推荐！", "这本书很好看\n推荐", "no_terminal_punctuation"),
    ("bad_words", C.BadWordsFilter(), "房间干净，服务周到", "点击进入网上赌场领取彩金", "bad_words"),
    ("bad_words", C.BadWordsFilter(words=["spam"]), "classic book", "buy spam now", "bad_words"),
    ("language", C.LanguageFilter(languages=["zh"]), "这家酒店的服务非常好，房间也很干净，下次还会再来。",
     "The hotel was clean and the staff were friendly, would stay again.", "wrong_language"),
]


@pytest.mark.parametrize("name,cfg,kept,dropped,reason", CASES, ids=[f"{c[0]}-{c[4]}" for c in CASES])
def test_filter_keeps_and_drops_with_reason(name, cfg, kept, dropped, reason):
    f = STEPS[name](cfg)
    assert f.reason(kept) is None
    assert f.reason(dropped) == reason


def test_short_reviews_survive_the_quickstart_filters():
    # real, short reviews must not be thrown away by filters tuned for web pages
    specs = [C.FilterSpec(length=C.LengthFilter(min_chars=2)), C.FilterSpec(script_ratio=C.ScriptRatioFilter()),
             C.FilterSpec(symbol_ratio=C.SymbolRatioFilter()), C.FilterSpec(repetition=C.RepetitionFilter(min_chars_to_apply=80))]
    for text in ["质量不错", "很好很好", "还行吧", "不推荐!", "好好好好好好", "5星"]:
        reasons = [STEPS[s.name](getattr(s, s.name)).reason(text) for s in specs]
        assert reasons == [None] * 4, (text, reasons)


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=200))
def test_filters_never_crash_on_any_text(text):
    for name, cfg, *_ in CASES:
        if name != "language":
            r = STEPS[name](cfg).reason(text)
            assert r is None or (r.islower() and " " not in r)
    assert count_tokens(text) >= 0


def test_quality_lm_ranks_fluent_text_above_noise_and_cuts_by_percentile():
    lm = CharBigramLM(["今天天气很好，我们去公园散步。", "这家酒店的服务很好。", "我们今天去酒店。"] * 20)
    fluent, noise = lm.perplexities(["今天我们去公园。", "qz#@!~ 覆盖 xx"])
    assert fluent < noise
    assert lm.perplexity("今天我们去公园。") == pytest.approx(fluent)
    scores = [1.0, 2.0, 3.0, 4.0, 100.0]
    assert percentile_cut(scores, 20.0) < 100.0 and percentile_cut(scores, 0) == float("inf")


def test_normalisation_steps_and_counts():
    n = Normalizer(C.NormalizeConfig(html=True, pii="mask", traditional_to_simplified=True))
    out = n("<p>這個&amp;質量　ＡＢＣ１２３</p>\u200b好\x07  ")
    assert out == "这个&质量 ABC123 好"
    assert {"html", "nfkc", "control_chars", "traditional_to_simplified", "whitespace"} <= set(n.changed)
    off = Normalizer(C.NormalizeConfig(nfkc=False, fullwidth=False, whitespace=False, control_chars=False))
    assert off("ＡＢＣ  ") == "ＡＢＣ  " and not off.changed


def test_fullwidth_keeps_cjk_punctuation():
    n = Normalizer(C.NormalizeConfig(nfkc=False, fullwidth=True))
    assert n("好。ＯＫ！") == "好。OK!"


def test_pii_masking_validates_checksums():
    assert id_checksum_ok("11010519491231002X") and not id_checksum_ok("110105194912310021")
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    n = Normalizer(C.NormalizeConfig(pii="mask"))
    text = "邮箱 zhang.san@example.com 手机 138-1234-5678 身份证 11010519491231002X 卡 4111 1111 1111 1111 订单 20231105"
    out = n(text)
    assert out == "邮箱 <EMAIL> 手机 <PHONE> 身份证 <ID_NUMBER> 卡 <BANK_CARD> 订单 20231105"
    assert n.pii == {"EMAIL": 1, "PHONE": 1, "ID_NUMBER": 1, "BANK_CARD": 1}
    assert n("身份证 110105194912310021") == "身份证 110105194912310021"  # bad check digit: not an ID, left alone
