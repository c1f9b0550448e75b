"""The attack flips a model that depends on one character; the perturbation suites rewrite as promised."""

from __future__ import annotations

import random

import numpy as np

from trainforge.evaluate.adversarial import Classifier, attack_one, run_attack
from trainforge.evaluate.config import AdversarialConfig
from trainforge.evaluate.fonts import setup_cjk_font
from trainforge.evaluate.perturb import add_whitespace, drop_punctuation, flip_width, typos
from trainforge.evaluate.substitutes import SubstitutionSource, segment

from .conftest import LABELS, SIGNAL, make_rows


def _source(tiny):
    model, tokenizer, train = tiny
    return SubstitutionSource([r["text"] for r in train], model, tokenizer, setup_cjk_font().path)


def test_tiny_model_depends_on_the_signal_character(tiny):
    model, tokenizer, _ = tiny
    clf = Classifier(model, tokenizer)
    rows = make_rows(40, seed=9)
    pred = clf.probs([r["text"] for r in rows]).argmax(1)
    assert (pred == np.array([LABELS.index(r["label"]) for r in rows])).mean() >= 0.95


def test_homophones_of_the_signal_come_from_the_corpus(tiny):
    source = _source(tiny)
    assert set(source.homophones(SIGNAL, 10)) == {"号", "浩", "豪", "毫"}  # the hao characters the corpus holds
    assert all(c.text != SIGNAL for c in source.candidates(SIGNAL, 8))


def test_attack_flips_the_prediction_by_replacing_the_signal(tiny):
    model, tokenizer, _ = tiny
    clf = Classifier(model, tokenizer)
    text = "这个东西我们买了书店" + SIGNAL + "酒房间服务质量价格物流包装内容"
    assert clf.probs([text])[0].argmax() == 1
    result = attack_one(text, 1, clf, _source(tiny), AdversarialConfig(min_sentence_similarity=0.3))
    assert result.success
    assert result.pred_after == 0 and clf.probs([result.perturbed])[0].argmax() == 0
    assert SIGNAL not in result.perturbed
    assert len(result.changed) == 1 and SIGNAL in result.changed[0]["from"]  # importance by deletion found it first
    assert result.perturbed_fraction < 0.1


def test_similarity_constraint_blocks_every_rewrite(tiny):
    model, tokenizer, _ = tiny
    text = "这个东西我们买了书店" + SIGNAL + "酒房间服务质量价格物流包装内容"
    result = attack_one(text, 1, Classifier(model, tokenizer), _source(tiny), AdversarialConfig(min_sentence_similarity=0.99))
    assert not result.success and result.perturbed == text


def test_run_attack_reports_rates(tiny):
    model, tokenizer, _ = tiny
    clf = Classifier(model, tokenizer)
    rows = make_rows(12, seed=5)
    y = np.array([LABELS.index(r["label"]) for r in rows])
    pred = clf.probs([r["text"] for r in rows]).argmax(1)
    report = run_attack(rows, y, pred, LABELS, clf, _source(tiny), AdversarialConfig(samples=12, min_sentence_similarity=0.3), seed=0)
    positives = sum(1 for i, r in enumerate(rows) if r["label"] == "positive" and pred[i] == y[i])
    assert report["attacked"] == int((pred == y).sum())
    assert report["succeeded"] >= positives  # every positive hangs on one character
    assert report["accuracy_under_attack"] == round((report["attacked"] - report["succeeded"]) / 12, 5)
    assert report["examples"] and all(e["label"] != e["pred_after"] for e in report["examples"])


def test_segment_keeps_every_character():
    text = "这本书很好看, but the ending 太快了!  "
    assert "".join(segment(text)) == text


def test_perturbations():
    rng = random.Random(0)
    assert flip_width("AB, 好!", rng) == "ＡＢ，\u3000好！"
    assert flip_width(flip_width("AB, 好!", rng), rng) == "AB, 好!"
    assert drop_punctuation("好，很好！ok.", rng) == "好很好ok"
    spaced = add_whitespace("这个东西很好", random.Random(1))
    assert spaced.replace(" ", "") == "这个东西很好" and " " in spaced
    homophones = {"好": ["号"]}
    out = typos("好" * 200, random.Random(0), lambda ch, k: homophones.get(ch, []))
    assert 0 < out.count("号") < 60 and set(out) == {"好", "号"}


def test_attack_never_substitutes_outside_its_allowed_sources(tiny):
    """Every applied (and every refused) substitution is of an allowed kind, and re-checks against its source."""
    from trainforge.evaluate.substitutes import MEANING_PRESERVING

    model, tokenizer, _ = tiny
    clf = Classifier(model, tokenizer)
    source = _source(tiny)
    rows = make_rows(16, seed=11)
    cfg = AdversarialConfig(min_sentence_similarity=0.3, max_perturbed_fraction=1.0, candidates_per_word=12)
    applied = 0
    for allowed in (MEANING_PRESERVING, ("homophone",), ("lookalike",)):
        for r in rows:
            result = attack_one(r["text"], LABELS.index(r["label"]), clf, source, cfg, kinds=allowed)
            for c in result.changed + result.rejected:
                assert c["kind"] in allowed, (allowed, c)
                assert source.allows(c["from"], c["to"], c["kind"]), c
            applied += len(result.changed)
    assert applied > 0  # the check saw real substitutions
    y = np.array([LABELS.index(r["label"]) for r in rows])
    report = run_attack(rows, y, y, LABELS, clf, source, AdversarialConfig(samples=16, min_sentence_similarity=0.3), seed=0)
    assert "embedding" not in report["candidate_sources"] and report["meaning_preserving"]
    assert all(c["kind"] in MEANING_PRESERVING for c in report["accepted"] + report["rejected"])


def test_embedding_neighbours_are_not_meaning_preserving_but_found_when_asked(tiny):
    source = _source(tiny)
    word = "服务"
    assert all(c.kind != "embedding" for c in source.candidates(word, 20))
    unconstrained = source.candidates(word, 20, kinds=("homophone", "lookalike", "synonym", "embedding"))
    emb = [c for c in unconstrained if c.kind == "embedding"]
    assert all(source.allows(word, c.text, "embedding") for c in emb)
    assert source.allows(word, "服物", "homophone")  # 务 / 物: both wu
    assert not source.allows(word, "服好", "homophone") and not source.allows(word, "号物", "homophone")  # other sound; two edits
    assert not source.allows("好", "坏", "synonym") and not source.allows(word, "从未见过", "embedding")
