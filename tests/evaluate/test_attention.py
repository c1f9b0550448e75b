"""Attention maps come back from BERT and Llama classifiers alike; rollout rows are distributions; PNGs are written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainforge.evaluate.attention import (
    attention_maps,
    attention_rollout,
    classifier_position,
    draw_attention,
    load_eager_classifier,
    token_strings,
)
from trainforge.evaluate.fonts import setup_cjk_font

from .conftest import LABELS, make_rows


def test_rollout_rows_sum_to_one_and_identity_without_attention():
    rng = np.random.default_rng(0)
    attn = rng.random((3, 2, 5, 5))
    attn /= attn.sum(-1, keepdims=True)
    r = attention_rollout(attn)
    np.testing.assert_allclose(r.sum(-1), 1.0)
    eye = np.broadcast_to(np.eye(4), (2, 2, 4, 4))
    np.testing.assert_allclose(attention_rollout(eye), np.eye(4))


def test_token_strings_are_the_text_spans(tiny):
    _, tokenizer, _ = tiny
    ids, tokens = token_strings(tokenizer, "这个好东西", 32)
    assert tokens == ["[CLS]", "这", "个", "好", "东", "西", "[SEP]"] and len(ids) == len(tokens)


def test_llama_classifier_attentions_read_from_the_last_token(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      intermediate_size=32, max_position_embeddings=64, pad_token_id=0, num_labels=2)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "llama")
    model = load_eager_classifier(tmp_path / "llama")
    attn = attention_maps(model, [5, 6, 7, 8])
    assert attn.shape == (2, 2, 4, 4)
    assert np.allclose(np.triu(attn, 1), 0)  # causal
    assert classifier_position(model, 4) == 3


def test_bert_heatmaps_written_with_cjk_glyphs(tiny, tmp_path, recwarn):
    model, tokenizer, _ = tiny
    model.save_pretrained(tmp_path / "m")
    eager = load_eager_classifier(tmp_path / "m")
    assert classifier_position(eager, 10) == 0
    rows = make_rows(3, seed=4)
    probs = np.tile([0.3, 0.7], (3, 1))
    drawn = draw_attention(eager, tokenizer, rows, LABELS, probs, [0, 1], 24, tmp_path / "attention")
    assert len(drawn) == 2
    for d in drawn:
        for key in ("heads_png", "rollout_png"):
            png = tmp_path / "attention" / d[key]
            assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert d["layers_shown"] == [1] and d["heads_shown"] == 2  # the last layer, both its heads
    if setup_cjk_font().family:
        assert not [w for w in recwarn if "missing from font" in str(w.message)]
    else:  # a machine with neither a system CJK font nor the pip one: say so, don't fail
        pytest.skip("no CJK font available here: glyph check skipped")


def test_a_character_split_into_byte_tokens_is_drawn_once():
    """Byte-level BPE gives every byte token of a rare character that character's span: label it once."""
    from trainforge.models.tokenizer import train_bpe

    tokenizer = train_bpe(["这个好东西"] * 20 + ["难"], vocab_size=270, min_frequency=1, max_length=32)
    ids, tokens = token_strings(tokenizer, "难难", 32)  # 难 never merged: three byte tokens each
    assert tokens == ["[CLS]", "难", "·", "·", "难", "·", "·", "[SEP]"] and len(ids) == len(tokens)
