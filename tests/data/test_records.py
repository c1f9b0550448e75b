"""Records that carry more than text (image, audio, chat, preference pairs, prompt + reference) through
the readers and the pipeline; the corpus-level step; the one definition of CJK characters."""

from __future__ import annotations

import json
import math
import tempfile
from itertools import chain
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainforge.data import pipeline as P
from trainforge.data.config import DataConfig, DedupConfig, FilterSpec, NormalizeConfig, SourceConfig
from trainforge.data.executor import LocalExecutor
from trainforge.data.io import Quarantined, Record, read_source

EVERY_FIELD = dict(image_field="image", audio_field="audio", messages_field="messages", prompt_field="prompt",
                   chosen_field="chosen", rejected_field="rejected", reference_field="reference")
CHAT = [{"role": "user", "content": "这家酒店怎么样？"}, {"role": "assistant", "content": "房间干净，服务周到。"}]


def _read(path: Path, **kw) -> list:
    return list(read_source(SourceConfig(path=str(path), **kw)))


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


# --------------------------------------------------------------------------- readers


def test_each_record_kind_reads_from_jsonl_with_a_field_mapping(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", [
        {"img": "cats/1.jpg", "y": "cat"},                                                    # 1 image classification
        {"img": "https://x/2.png", "caption": "一只猫", "y": "cat"},                             # 2 image–text
        {"wav": "a/1.wav", "y": "speech", "speaker": 7},                                       # 3 audio (extra field kept)
        {"chat": CHAT, "y": "sft"},                                                            # 4 chat SFT
        {"q": "哪个回答更好？", "good": "这个。", "bad": "那个。", "y": "dpo"},                       # 5 DPO, strings
        {"q": CHAT[:1], "good": CHAT[1:], "bad": [{"role": "assistant", "content": "不知道"}], "y": "dpo"},  # 6 DPO, messages
        {"q": "1+1=?", "answer": 2, "y": "grpo"},                                               # 7 GRPO, a numeric answer
    ])
    items = _read(path, text_field="caption", label_field="y", image_field="img", audio_field="wav", messages_field="chat",
                  prompt_field="q", chosen_field="good", rejected_field="bad", reference_field="answer")
    assert all(isinstance(i, Record) for i in items), [i for i in items if isinstance(i, Quarantined)]
    img, pair, audio, chat, dpo, dpo_msgs, grpo = items
    assert (img.image, img.text, img.label, img.document) == ("cats/1.jpg", None, "cat", "")
    assert (pair.image, pair.text, pair.document) == ("https://x/2.png", "一只猫", "一只猫")
    assert audio.audio == "a/1.wav" and audio.meta == {"speaker": 7}
    assert chat.messages == CHAT and chat.document == "这家酒店怎么样？\n房间干净，服务周到。"
    assert (dpo.prompt, dpo.chosen, dpo.rejected) == ("哪个回答更好？", "这个。", "那个。")
    assert dpo_msgs.chosen == CHAT[1:] and dpo_msgs.document == "这家酒店怎么样？\n房间干净，服务周到。\n不知道"
    assert (grpo.prompt, grpo.reference) == ("1+1=?", "2")
    # written back under the record's names, only what is present
    assert img.to_json() == {"id": "mixed.jsonl:1", "label": "cat", "source": str(path), "image": "cats/1.jpg"}
    assert list(dpo.to_json()) == ["id", "label", "source", "prompt", "chosen", "rejected"]


def test_a_text_record_writes_exactly_what_it_always_did(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"text": "好书", "label": "positive", "stars": 5}])
    for kw in ({}, EVERY_FIELD):  # mapping more fields changes nothing for a text row
        (rec,) = _read(path, **kw)
        assert json.dumps(rec.to_json(), ensure_ascii=False) == \
            json.dumps({"id": "t.jsonl:1", "text": "好书", "label": "positive", "source": str(path), "stars": 5}, ensure_ascii=False)


def test_each_record_kind_reads_from_csv(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('image,label,prompt,chosen,rejected,reference,messages\n'
                    'a.jpg,cat,,,,,\n'
                    ',dpo,问题,好,坏,,\n'
                    ',grpo,1+1=?,,,2,\n'
                    ',sft,,,,,"[{""role"": ""user"", ""content"": ""你好""}]"\n'
                    ',bad,,,,,not json\n'
                    ',none,,,,,\n', encoding="utf-8")
    items = _read(path, **EVERY_FIELD)
    kinds = [(i.line, i.reason) if isinstance(i, Quarantined) else (i.line, i.image or i.chosen or i.reference or i.messages)
             for i in items]
    assert kinds == [(2, "a.jpg"), (3, "好"), (4, "2"), (5, [{"role": "user", "content": "你好"}]),
                     (6, "invalid_messages"), (7, "no_content")]
    assert items[0].meta == {"prompt": "", "chosen": "", "rejected": "", "reference": "", "messages": ""}  # empty cells stay


def test_csv_without_any_mapped_column_is_a_user_error(tmp_path):
    from trainforge.errors import UserError

    path = tmp_path / "in.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(UserError, match="none of the mapped columns"):
        _read(path, label_field=None, image_field="image")
    with pytest.raises(UserError, match="header has no 'text' column"):  # text alone: today's message
        _read(path, label_field=None)


def test_malformed_records_are_quarantined_with_line_and_a_reason_naming_the_field(tmp_path):
    rows = [
        {"messages": "just a string"},                                    # 1
        {"messages": [{"role": "user"}]},                                 # 2 no content
        {"messages": [{"role": "user", "content": 3}]},                   # 3
        {"messages": []},                                                 # 4
        {"prompt": "q", "chosen": "a"},                                   # 5
        {"prompt": "q", "rejected": "b"},                                 # 6
        {"prompt": {"text": "q"}, "reference": "1"},                      # 7
        {"reference": "1"},                                               # 8
        {"image": 5},                                                     # 9
        {"audio": ["a.wav"]},                                             # 10
        {"chosen": "a", "rejected": ["b"]},                               # 11
        {"text": "   "},                                                  # 12
        {"other": "x"},                                                   # 13
        {"text": 7, "image": "a.jpg"},                                    # 14
        '{"image": "\\ud800.jpg"}',                                       # 15 a lone surrogate via escape
        {"prompt": "q", "chosen": "a", "rejected": "b", "reference": 1.5},  # 16 fine
    ]
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    items = _read(path, label_field=None, **EVERY_FIELD)
    got = {i.line: i.reason for i in items if isinstance(i, Quarantined)}
    assert got == {1: "invalid_messages", 2: "invalid_messages", 3: "invalid_messages", 4: "invalid_messages",
                   5: "chosen_without_rejected", 6: "rejected_without_chosen", 7: "invalid_prompt",
                   8: "reference_without_prompt", 9: "invalid_image", 10: "invalid_audio", 11: "invalid_rejected",
                   12: "empty_text", 13: "no_content", 14: "non_string_text", 15: "invalid_unicode"}
    assert all(q.source == str(path) for q in items if isinstance(q, Quarantined))
    assert [i.line for i in items if isinstance(i, Record)] == [16]


def test_chosen_and_rejected_fields_go_together():
    with pytest.raises(ValueError, match="go together"):
        SourceConfig(path="x.jsonl", chosen_field="chosen")


# --------------------------------------------------------------------------- the pipeline

FILTERS = [{"length": {"min_chars": 2}}, {"script_ratio": {}}, {"symbol_ratio": {}}, {"repetition": {}},
           {"bad_words": {}}, {"quality": {"drop_percentile": 5}}]


def _cfg(path: Path, **kw) -> DataConfig:
    base = dict(sources=[SourceConfig(path=str(path), label_field=None, **EVERY_FIELD)],
                filters=[FilterSpec(**f) for f in FILTERS], normalize=NormalizeConfig(html=True, pii="mask"),
                dedup=DedupConfig(exact="hash", near=0.8))
    return DataConfig(**(base | kw))


def _run(cfg: DataConfig, out: Path) -> tuple[P.Curated, P.Funnel]:
    funnel = P.Funnel(out, seed=0)
    executor = LocalExecutor()
    cur = P.read_all(chain.from_iterable(read_source(s) for s in cfg.sources), funnel, out, cfg=cfg, executor=executor)
    cur = P.clean(cur, cfg, funnel, executor)
    cur = P.dedup_exact(cur, cfg, funnel)
    cur = P.dedup_near(cur, cfg, funnel, executor, log=lambda m: None)
    return cur, funnel


texts = st.one_of(st.text(max_size=30), st.sampled_from(["质量不错", "质量不错", "<b>好</b>", "   ", "ＡＢＣ很好"]))
row = st.one_of(
    st.builds(lambda t: {"text": t}, texts),
    st.builds(lambda p: {"image": p}, st.sampled_from(["a.jpg", "a.jpg", "b.jpg", "", 3])),
    st.builds(lambda p, t: {"image": p, "text": t}, st.sampled_from(["a.jpg", "c.jpg"]), texts),
    st.builds(lambda a, b: {"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}, texts, texts),
    st.builds(lambda p, c, r: {"prompt": p, "chosen": c, "rejected": r}, texts, texts, texts),
    st.builds(lambda p, r: {"prompt": p, "reference": r}, texts, st.one_of(texts, st.integers(0, 9))),
    st.builds(lambda p: {"prompt": p, "chosen": p}, texts),
    st.builds(lambda m: {"messages": m}, st.sampled_from([[], "x", [{"role": 1, "content": "a"}]])),
    st.just({"audio": "x.wav"}),
    st.just({"unrelated": 1}),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, max_size=30), split=st.integers(0, 30))
def test_funnel_reconciles_with_mixed_record_kinds(rows, split):
    with tempfile.TemporaryDirectory() as d:
        src = _jsonl(Path(d) / "in.jsonl", rows) if rows else Path(d) / "in.jsonl"
        src.touch()
        cur, funnel = _run(_cfg(src), Path(d) / "out")
        # decontaminate part of the survivors against the rest, with the rest passing through
        held_out = cur.records[split:]
        train = P.decontaminate(cur.records[:split], [r.document for r in held_out], 13, funnel,
                                passthrough=[r.document for r in held_out])
        stats = funnel.stats(cur.read, len(train) + len(held_out), cur.quarantined)  # raises when it does not reconcile
        assert stats["read"] == len(rows)
        rejected = sum(1 for f in (Path(d) / "out" / "rejected").glob("*.jsonl") for _ in open(f, encoding="utf-8"))
        assert rejected == sum(stats["dropped"].values())
        assert all(r.document or r.media() for r in cur.records)  # nothing survives with no content at all


def test_records_without_text_pass_text_filters_counted_and_dedup_by_reference(tmp_path):
    src = _jsonl(tmp_path / "img.jsonl", [
        {"image": "a.jpg", "label": "cat"},
        {"image": "a.jpg", "label": "cat"},                        # exact copy of the reference
        {"image": "b.jpg", "label": "cat"},
        {"image": "b.jpg", "label": "dog"},                        # same image, another label
        {"image": "c.jpg", "text": "一只可爱的小猫在沙发上睡觉", "label": "cat"},
        {"image": "d.jpg", "text": "一只可爱的小猫在沙发上睡觉", "label": "cat"},  # same caption, another photo: kept
        {"text": "一只可爱的小猫在沙发上睡觉", "label": "cat"},             # text alone: not the same content either
    ])
    cfg = _cfg(src, sources=[SourceConfig(path=str(src), image_field="image")], filters=[FilterSpec(**f) for f in FILTERS])
    cur, funnel = _run(cfg, tmp_path / "out")
    assert sorted((r.image or "", r.label) for r in cur.records) == [("", "cat"), ("a.jpg", "cat"), ("c.jpg", "cat"), ("d.jpg", "cat")]
    stats = funnel.stats(cur.read, len(cur.records), cur.quarantined)
    assert stats["dropped"] == {"exact_duplicate": 2, "label_conflict": 1}  # the second b.jpg is a copy first
    assert stats["steps"]["filter_length"]["no_text"] == 4 and stats["steps"]["filter_quality"]["no_text"] == 4
    assert stats["steps"]["dedup_near"]["not_compared"] == 3  # the images exact dedup left
    assert stats["examples"]["exact_duplicate"] == ["image=a.jpg", "image=b.jpg"]


def test_normalisation_cleans_every_text_field_and_counts_a_record_once(tmp_path):
    src = _jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "ＡＢＣ好吗？", "name": "u1"}, {"role": "assistant", "content": "很好ＸＹＺ"}]},
        {"prompt": "１＋１＝？", "reference": "２"},
    ])
    cfg = _cfg(src, filters=[], dedup=DedupConfig(exact="off", near=None))
    cur, funnel = _run(cfg, tmp_path / "out")
    chat, grpo = cur.records
    assert chat.messages == [{"role": "user", "content": "ABC好吗?", "name": "u1"}, {"role": "assistant", "content": "很好XYZ"}]
    assert (grpo.prompt, grpo.reference) == ("1+1=?", "2")
    assert funnel.steps["normalize"]["changed"]["nfkc"] == 2  # records, not fields


# --------------------------------------------------------------------------- the corpus-level step


def test_quality_step_fits_the_percentile_and_judges_against_it():
    from trainforge.data.config import QualityFilter
    from trainforge.data.filters import STEPS, corpus_level

    step = STEPS["quality"](QualityFilter(drop_percentile=20))
    assert corpus_level(step) and not corpus_level(STEPS["length"]())
    assert step.reason(1e9) is None and step.summary() == {}  # not fitted: keeps everything
    step.fit([1.0, 2.0, 3.0, 4.0, 100.0])
    assert step.threshold == pytest.approx(float(np.percentile([1.0, 2.0, 3.0, 4.0, 100.0], 80)))
    assert [step.reason(s) for s in (4.0, 100.0)] == [None, "low_quality"]
    assert step.summary() == {"threshold_perplexity": round(step.threshold, 2)}


def test_corpus_level_step_cuts_what_the_percentile_over_the_survivors_cuts(tmp_path):
    """The threshold is the (100 - p) percentile of the perplexities of what the earlier filters kept,
    computed directly here: the same threshold, the same documents dropped."""
    from trainforge.data.filters import LengthFilterStep
    from trainforge.data.normalize import Normalizer
    from trainforge.data.quality import percentile_cut, reference_lm
    from trainforge.data.synthetic import planted_corpus

    corpus = planted_corpus(400, seed=3).texts + ["qz#@!~ xx", "a", "###***", "质量不错"]
    src = _jsonl(tmp_path / "c.jsonl", [{"text": t} for t in corpus])
    specs = [FilterSpec(length={"min_chars": 5}), FilterSpec(quality={"drop_percentile": 10})]
    cfg = DataConfig(sources=[SourceConfig(path=str(src), label_field=None)], filters=specs,
                     dedup=DedupConfig(exact="off", near=None), decontaminate=None)
    cur, funnel = _run(cfg, tmp_path / "out")

    norm, length = Normalizer(cfg.normalize), LengthFilterStep(specs[0].length)
    survivors = [t for t in map(norm, corpus) if t and length.reason(t) is None]
    ppl = reference_lm("peoples-daily-1998").perplexities(survivors)
    cut = percentile_cut(ppl.tolist(), 10)
    assert math.isfinite(cut)
    assert funnel.steps["filter_quality"]["threshold_perplexity"] == round(cut, 2)
    assert [r.text for r in cur.records] == [t for t, p in zip(survivors, ppl) if p <= cut]
    assert funnel.dropped["low_quality"] == int((ppl > cut).sum()) > 0


def test_a_corpus_level_filter_must_come_last():
    from trainforge.data.filters import check_order
    from trainforge.errors import UserError

    check_order([FilterSpec(length={}), FilterSpec(quality={})])
    with pytest.raises(UserError, match="the quality filter must be the last one"):
        check_order([FilterSpec(quality={}), FilterSpec(length={})])


def test_stage_writes_every_record_kind(tmp_path):
    from trainforge.data.stage import run_data

    src = _jsonl(tmp_path / "mixed.jsonl", [{"text": f"这是第{i}条很好的评论，物流很快。"} for i in range(12)]
                 + [{"image": f"{i}.jpg"} for i in range(6)]
                 + [{"messages": [{"role": "user", "content": f"问题{i}是什么？"}, {"role": "assistant", "content": f"答案是{i}。"}]}
                    for i in range(6)])

    class Ctx:
        section = DataConfig(sources=[SourceConfig(path=str(src), label_field=None, image_field="image",  # names, no files:
                                                   messages_field="messages", check_images=False)],             # left unread filters=[FilterSpec(length={"min_chars": 2})],
                             decontaminate={"ngram": 50})  # longer than every text: only an identical one overlaps
        config = type("Cfg", (), {"seed": 1})()

        def path(self, *parts):
            return tmp_path.joinpath("run", *parts)

    metrics = run_data(Ctx())
    data = tmp_path / "run" / "data"
    rows = [json.loads(line) for name in ("train", "val", "test") for line in (data / f"{name}.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["kept"] == 24
    assert sum("image" in r for r in rows) == 6 and sum("messages" in r for r in rows) == 6
    assert all("text" not in r for r in rows if "image" in r or "messages" in r)


# --------------------------------------------------------------------------- one definition of CJK characters


def test_one_cjk_definition_with_named_variants():
    from trainforge import text_scripts as S
    from trainforge.data import filters, minhash
    from trainforge.evaluate.generation import CjkAwareTokenizer, has_cjk

    assert minhash.is_cjk_text is S.is_cjk_text and filters.CJK is S.CJK
    # the han script_ratio keeps its documented [\u4e00-\u9fa5]: U+9FA6 and extension A are CJK, not han
    han = filters.ScriptRatioStep(filters.C.ScriptRatioFilter(script="han", min_ratio=0.5))
    assert han.reason("\u9fa6\u9fa6") == "low_script_ratio" and han.reason("\u4e00\u9fa5") is None
    assert S.CJK.fullmatch("\u3400") and S.CJK.fullmatch("\u9fa6")
    # BLEU/ROUGE tokenising keeps kana and hangul as a token per character
    assert CjkAwareTokenizer().tokenize("かな한글 ok") == ["か", "な", "한", "글", "ok"] and has_cjk("한")
    assert filters.count_tokens("好 ok 很好") == 4


def test_process_pool_keeps_what_one_process_keeps_with_mixed_kinds(tmp_path, monkeypatch):
    from trainforge.data.executor import PoolExecutor

    monkeypatch.setattr(P, "STREAM_BLOCK", 7)  # shards handed out while reading
    rows = [{"text": f"第{i % 9}条评论：质量不错，物流很快。"} for i in range(30)] + [{"image": f"{i % 4}.jpg"} for i in range(10)] \
        + [{"prompt": f"问题{i % 3}", "chosen": "ＡＢ好", "rejected": "坏"} for i in range(10)]
    src = _jsonl(tmp_path / "m.jsonl", rows)
    cfg = _cfg(src)
    one, f1 = _run(cfg, tmp_path / "one")
    pool = PoolExecutor(2)
    try:
        funnel = P.Funnel(tmp_path / "two", seed=0)
        cur = P.read_all(read_source(cfg.sources[0]), funnel, tmp_path / "two", cfg=cfg, executor=pool)
        cur = P.clean(cur, cfg, funnel, pool)
        cur = P.dedup_exact(cur, cfg, funnel)
        two = P.dedup_near(cur, cfg, funnel, pool, log=lambda m: None)
    finally:
        pool.close()
    assert [r.to_json() for r in one.records] == [r.to_json() for r in two.records]
    assert f1.dropped == funnel.dropped and f1.dropped["exact_duplicate"] > 0
