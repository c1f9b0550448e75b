"""ULMFiT concat pooling on a Llama classifier: what it pools, padding invariance, and every way back from disk."""

from __future__ import annotations

import pytest
import torch

from trainforge.errors import UserError
from trainforge.models.presets import build_classifier

TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=32)
LABELS = {0: "negative", 1: "positive"}


def concat_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_classifier("llama-tiny", 50, 2, 64, 0.0, LABELS, 0, pooling="concat", **TINY).eval()


def test_pools_last_mean_and_max_of_the_real_tokens_only():
    model = concat_model()
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 9, 2, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        hidden = model.model(ids, attention_mask=mask).last_hidden_state
        for row in range(2):
            n = int(mask[row].sum())
            real = hidden[row, :n]
            expected = model.score(torch.cat([real[-1], real.mean(0), real.amax(0)]))
            got = model(input_ids=ids, attention_mask=mask).logits[row]
            assert torch.allclose(got, expected, atol=1e-5)


def test_a_text_scores_the_same_alone_and_padded_in_a_batch():
    model = concat_model()
    short, long = [1, 9, 8, 2], [1, 5, 6, 7, 11, 12, 2]
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([short])).logits[0]
        batch = torch.tensor([short + [0] * 3, long])
        together = model(input_ids=batch, attention_mask=(batch != 0).long()).logits[0]
    assert torch.allclose(alone, together, atol=1e-5)


def test_trains_and_loads_back_through_the_loader_and_compressed_variants(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from trainforge.compress.load import load_variant, save_variant
    from trainforge.compress.quantize import to_weight_only_int8
    from trainforge.models.load import load_classifier
    from trainforge.models.pooling import ARCHITECTURE
    from trainforge.models.tokenizer import train_bpe

    model = concat_model()
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    mask = (ids != 0).long()
    out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert model.score.weight.grad is not None and model.score.weight.shape == (2, 48)
    model.save_pretrained(tmp_path / "model")
    assert model.config.architectures == [ARCHITECTURE] and model.config.model_type == "llama"
    again = load_classifier(tmp_path / "model")
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids, attention_mask=mask).logits, model(input_ids=ids, attention_mask=mask).logits)
    with pytest.raises(Exception, match="(?i)size|shape"):  # a plain loader refuses the 3C head instead of mis-pooling
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")

    tok = train_bpe(["房间很干净"] * 5, vocab_size=300, min_frequency=1, max_length=16, family="llama")
    stored = to_weight_only_int8(again)
    variant = load_variant(save_variant(stored, tmp_path / "int8", tok, {"format": "int8", "runtime": "weight_only"}))
    assert type(variant).__name__ == ARCHITECTURE
    with torch.no_grad():
        assert torch.equal(variant(input_ids=ids, attention_mask=mask).logits, stored(input_ids=ids, attention_mask=mask).logits)


def test_concat_pooling_is_for_decoders():
    with pytest.raises(UserError, match="train.pooling=concat is for Llama decoders"):
        build_classifier("encoder-tiny", 50, 2, 64, 0.0, LABELS, 0, pooling="concat")
