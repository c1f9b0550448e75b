"""data.augment: EDA's four operations, back-translation through both kinds of translator, and the step's
promises (labels kept, tagged, capped per class, near duplicates and val/test overlap rejected)."""

import random
from collections import Counter

import pytest

from trainforge.data.augment import (EndpointTranslator, Seq2SeqTranslator, Synonyms, augment_split, back_translate,
                                     eda, random_deletion, random_insertion, random_swap, synonym_replacement, words_of)
from trainforge.data.config import AugmentConfig
from trainforge.data.io import Record
from trainforge.data.pipeline import Funnel

CILIN = "Aa01A01= 酒店 饭店 旅馆\nBa01A01= 干净 清洁 整洁\nCa01A01# 好 坏\nDa01A01= 便宜 实惠\n"
TEXT = "这个酒店的房间很干净，价格也便宜"


@pytest.fixture
def synonyms(tmp_path):
    path = tmp_path / "cilin.txt"
    path.write_text(CILIN, encoding="utf-8")
    return Synonyms(str(path))


def test_words_are_jieba_words_for_chinese_and_whitespace_words_otherwise():
    import jieba

    words, joiner = words_of(TEXT)
    assert words == jieba.lcut(TEXT) and joiner == "" and "".join(words) == TEXT
    assert words_of("the room was clean") == (["the", "room", "was", "clean"], " ")


def test_the_four_operations(synonyms):
    words, _ = words_of(TEXT)
    rng = random.Random(0)
    replaced = synonym_replacement(words, 0.2, rng, synonyms)  # n = max(1, int(0.2 × words))
    changed = [(a, b) for a, b in zip(words, replaced) if a != b]
    assert len(replaced) == len(words) and 1 <= len(changed) <= max(1, int(0.2 * len(words)))
    assert all(b in synonyms(a) for a, b in changed)  # only `=` groups: 好 # 坏 are related, never swapped in
    inserted = random_insertion(words, 0.2, rng, synonyms)
    extra = Counter(inserted) - Counter(words)
    assert sum(extra.values()) == max(1, int(0.2 * len(words)))
    assert all(any(w in synonyms(o) for o in words) for w in extra)
    swapped = random_swap(words, 0.2, rng)
    assert Counter(swapped) == Counter(words) and swapped != words
    deleted = random_deletion(words, 0.3, random.Random(1))
    it = iter(words)
    assert 1 <= len(deleted) < len(words) and all(w in it for w in deleted)  # a subsequence
    assert random_deletion(["一"], 0.9, rng) == ["一"]
    # seeded: the same rng state gives the same text
    assert eda(TEXT, "synonym", 0.2, random.Random(5), synonyms) == eda(TEXT, "synonym", 0.2, random.Random(5), synonyms)


def _records(n_pos=12, n_neg=4):
    pos = ["酒店很干净服务也好", "房间干净价格便宜", "饭店的菜很好吃而且便宜", "旅馆整洁安静交通方便", "这个酒店的早餐很丰富",
           "干净卫生服务周到", "价格便宜位置好找", "酒店设施新房间大", "前台热情房间干净", "环境整洁值得推荐",
           "性价比高下次还来", "地段好出门就是地铁"]
    neg = ["房间很脏服务太差", "价格贵而且不干净", "酒店隔音差睡不好", "前台态度冷淡很失望"]
    return ([Record(f"p{i}", t, "positive", "s", i + 1, {"k": i}) for i, t in enumerate(pos[:n_pos])]
            + [Record(f"n{i}", t, "negative", "s", 100 + i, {}) for i, t in enumerate(neg[:n_neg])])


def test_augment_keeps_labels_tags_caps_and_filters(tmp_path, synonyms):
    train = _records()
    cfg = AugmentConfig(operations=["synonym", "insert", "swap", "delete"], alpha=0.2, per_record=3, max_per_class=5,
                        thesaurus=synonyms.path)
    funnel = Funnel(tmp_path, 0)
    out, added = augment_split(train, cfg, funnel, seed=0, held_out=["前台态度冷淡很失望啊"], ngram=6)
    assert out[: len(train)] == train
    new = out[len(train):]
    assert added == len(new) > 0
    per_class = Counter(r.label for r in new)
    assert per_class["positive"] <= 5 and per_class["negative"] <= 5
    by_id = {r.id: r for r in train}
    for r in new:
        src = by_id[r.meta["augmented"]["from"]]
        assert r.label == src.label and r.text != src.text and r.meta["augmented"]["op"] in cfg.operations
        assert r.id.startswith(src.id + "#aug-") and {k: v for k, v in r.meta.items() if k != "augmented"} == src.meta
        assert "前台态度冷淡很" not in r.text  # 6-grams of val/test never enter (decontamination of the new texts)
    step = funnel.steps["augment"]
    assert step["added"] == added and step["per_class"] == dict(per_class)
    assert step["docs_in"] == step["docs_out"] == len(train)  # originals pass through; added is reported beside

    # a class held at the largest's size: fill_to_largest gives the small class at most the difference
    out, _ = augment_split(train, AugmentConfig(operations=["swap", "delete"], per_record=4, fill_to_largest=True),
                           Funnel(tmp_path / "b", 0), seed=0)
    counts = Counter(r.label for r in out)
    assert counts["positive"] == 12 and 4 < counts["negative"] <= 12


def test_near_duplicates_of_the_originals_are_rejected(tmp_path):
    long = "这家酒店的位置非常好，离地铁站只有五分钟，房间宽敞明亮，床也很舒服，早餐种类丰富，前台服务热情周到，下次出差还会选择这里入住"
    train = [Record("a", long, "positive", "s", 1), Record("b", "很差", "negative", "s", 2), Record("c", "不好", "negative", "s", 3)]
    # one swap in a 40-word text leaves most 5-gram shingles intact: Jaccard far above 0.5
    cfg = AugmentConfig(operations=["swap"], alpha=0.01, per_record=2, dedup_threshold=0.5, classes=["positive"])
    funnel = Funnel(tmp_path, 0)
    out, added = augment_split(train, cfg, funnel, seed=0)
    assert added == 0 and funnel.steps["augment"]["rejected"]["augment_near_duplicate"] == 2


def _tiny_seq2seq(path):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from tests.serve.tiny_models import tiny_tokenizer

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    cfg = T5Config(vocab_size=len(tok), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2, pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    T5ForConditionalGeneration(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_back_translation_through_a_local_seq2seq_directory(tmp_path):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    fwd_dir, back_dir = _tiny_seq2seq(tmp_path / "zh-en"), _tiny_seq2seq(tmp_path / "en-zh")
    texts = ["房间很干净", "服务很好"]
    got = back_translate(texts, Seq2SeqTranslator(str(fwd_dir), max_new_tokens=6), Seq2SeqTranslator(str(back_dir), max_new_tokens=6),
                         "English", "Chinese")

    def direct(d, xs):
        tok, model = AutoTokenizer.from_pretrained(d), AutoModelForSeq2SeqLM.from_pretrained(d).eval()
        with torch.no_grad():
            ids = model.generate(**tok(xs, return_tensors="pt", padding=True), max_new_tokens=6, do_sample=False, num_beams=1)
        return [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]

    assert got == direct(back_dir, direct(fwd_dir, texts))


@pytest.mark.slow
def test_back_translation_through_trainforge_serve(llama_dir_for_augment):
    from openai import OpenAI

    from tests.serve.servers import start_server

    server, _ = start_server(str(llama_dir_for_augment))
    try:
        url = f"{server.url}/v1"
        tr = EndpointTranslator(url, max_tokens=8)
        assert tr.model == "llama"  # asked of /v1/models
        got = back_translate(["房间很干净"], tr, tr, "English", "Chinese")
        client = OpenAI(base_url=url, api_key="none")

        def ask(text, lang):
            r = client.chat.completions.create(model="llama", temperature=0, max_tokens=8, messages=[
                {"role": "system", "content": f"Translate the user's text into {lang}. Reply with the translation only."},
                {"role": "user", "content": text}])
            return r.choices[0].message.content.strip()

        assert got == [ask(ask("房间很干净", "English"), "Chinese")]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def llama_dir_for_augment(tmp_path_factory):
    from tests.serve.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("m") / "llama")
