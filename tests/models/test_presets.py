from __future__ import annotations

import pytest
import torch

from trainforge.errors import UserError
from trainforge.models.families import family_named
from trainforge.models.presets import PRESETS, build_causal_lm, build_classifier, count_parameters, resolve_model
from trainforge.models.tokenizer import CHAT_TEMPLATE, special_ids, train_bpe

TEXTS = ["房间很干净，服务很好。", "质量太差了，不推荐购买。", "人民日报发表社论。", "这本书写得很好。"] * 20
TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=32)


def test_llama_bpe_frames_with_bos_eos_and_round_trips_chinese():
    tok = train_bpe(TEXTS, vocab_size=300, min_frequency=1, max_length=64, family="llama")
    ids = tok("房间很干净")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "房间很干净"
    assert len(ids) - 2 < len("房间很干净".encode())  # merges: fewer tokens than UTF-8 bytes
    assert set(special_ids(tok)) == {"pad_token_id", "bos_token_id", "eos_token_id"}


def test_chat_template_renders_and_survives_save(tmp_path):
    from transformers import AutoTokenizer

    tok = train_bpe(TEXTS, vocab_size=300, min_frequency=1, max_length=64, family="llama")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = again.apply_chat_template([{"role": "user", "content": "好吗"}], add_generation_prompt=True, tokenize=False)
    assert text == "<s><|user|>\n好吗\n<|assistant|>\n"


def test_presets_build_decoder_and_encoder_classifiers():
    llama = build_classifier("llama-tiny", 300, 2, 64, 0.1, {0: "neg", 1: "pos"}, 0, **TINY)
    bert = build_classifier("encoder-tiny", 300, 3, 64, 0.1, {0: "a", 1: "b", 2: "c"}, 0)
    assert type(llama).__name__ == "LlamaForSequenceClassification" and llama.config.id2label[1] == "pos"
    assert type(bert).__name__ == "BertForSequenceClassification" and bert.config.num_labels == 3
    logits = llama(input_ids=torch.tensor([[1, 5, 6, 2, 0]]), attention_mask=torch.tensor([[1, 1, 1, 1, 0]])).logits
    assert logits.shape == (1, 2)


def test_causal_lm_preset_and_pretrained_body_becomes_a_classifier(tmp_path):
    lm = build_causal_lm("llama-tiny", 300, 64, 0.0, {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}, **TINY)
    total, trainable = count_parameters(lm)
    assert total == trainable and lm.config.tie_word_embeddings
    assert total == sum(p.numel() for p in lm.parameters())  # tied head counted once
    lm.save_pretrained(tmp_path / "pretrain")
    (tmp_path / "pretrain" / "x").touch()
    clf = build_classifier("pretrain", 300, 2, 64, 0.1, {0: "neg", 1: "pos"}, 0, run_dir=tmp_path)
    assert torch.equal(clf.model.layers[0].mlp.up_proj.weight, lm.model.layers[0].mlp.up_proj.weight)
    assert clf.config.pad_token_id == 0


def test_every_preset_has_a_known_family():
    text = {p.family for p in PRESETS.values() if family_named(p.family).modality == "text"}
    assert text == {"bert", "llama", "deepseek_v3"}  # image / image-text presets: tests/vision/test_presets.py
    assert "llama-tiny" in PRESETS and "llama-small" in PRESETS and "llama-base" in PRESETS


def test_unknown_model_names_the_key_and_the_choices(tmp_path):
    with pytest.raises(UserError, match=r"train.model: 'nope'.*llama-tiny"):
        resolve_model("nope")
    with pytest.raises(UserError, match="add a pretrain: section"):
        resolve_model("pretrain", tmp_path)
    with pytest.raises(UserError, match="encoder preset"):
        build_causal_lm("encoder-tiny", 300, 64, 0.0, {})


def test_minilm_resolves_to_the_installed_model():
    path = resolve_model("minilm")
    assert (path / "config.json").is_file()
