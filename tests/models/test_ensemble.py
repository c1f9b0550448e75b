"""Deep ensembles as one model: what forward averages, and every way back from disk."""

from __future__ import annotations

import pytest
import torch

from trainforge.models.ensemble import ARCHITECTURE, EnsembleForSequenceClassification
from trainforge.models.presets import build_classifier

TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=32)
LABELS = {0: "negative", 1: "positive"}
IDS = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 9, 2, 0, 0, 0]])
MASK = (IDS != 0).long()


def members(n: int = 3, pooling: str = "last") -> list:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(build_classifier("llama-tiny", 50, 2, 64, 0.0, LABELS, 0, pooling=pooling, **TINY).eval())
    return out


def logits(model, **kw):
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK, **kw)


def test_forward_is_the_log_of_the_members_mean_probabilities():
    ms = members()
    ensemble = EnsembleForSequenceClassification.from_members(ms)
    expected = torch.stack([logits(m).logits.softmax(-1) for m in ms]).mean(0)
    out = logits(ensemble, labels=torch.tensor([0, 1]))
    assert torch.allclose(out.logits.softmax(-1), expected, atol=1e-6)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1])))
    assert not torch.allclose(expected, logits(ms[0]).logits.softmax(-1))  # the members really differ


def test_attentions_and_hidden_states_are_the_members_layerwise_means():
    ms = members(2)
    ensemble = EnsembleForSequenceClassification.from_members(ms)
    out = logits(ensemble, output_hidden_states=True)
    one, two = (logits(m, output_hidden_states=True).hidden_states for m in ms)
    assert len(out.hidden_states) == len(one) == TINY["num_hidden_layers"] + 1
    assert all(torch.allclose(h, (a + b) / 2, atol=1e-6) for h, a, b in zip(out.hidden_states, one, two))


@pytest.mark.parametrize("pooling", ["last", "concat"])
def test_saves_and_loads_back_through_the_loader_and_compressed_variants(tmp_path, pooling):
    from transformers import AutoModelForSequenceClassification

    from trainforge.compress.load import load_variant, save_variant
    from trainforge.compress.quantize import to_weight_only_int8
    from trainforge.models.load import load_classifier
    from trainforge.models.tokenizer import train_bpe

    ensemble = EnsembleForSequenceClassification.from_members(members(2, pooling))
    ensemble.save_pretrained(tmp_path / "model")
    again = load_classifier(tmp_path / "model")
    assert type(again) is EnsembleForSequenceClassification and again.config.architectures == [ARCHITECTURE]
    assert type(again.members[0]) is type(ensemble.members[0]) and again.config.model_type == "llama"
    assert torch.equal(logits(again).logits, logits(ensemble).logits)
    with pytest.raises(Exception, match="model.safetensors|no file"):  # never one member's shape with random weights
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")

    from trainforge.evaluate.attention import classifier_position

    eager = load_classifier(tmp_path / "model", attn_implementation="eager")  # what attention maps load
    attn = logits(eager, output_attentions=True).attentions
    assert len(attn) == TINY["num_hidden_layers"] and attn[0].shape == (2, 2, 6, 6)
    assert classifier_position(eager, 6) == 5  # decoder members read the last token

    tok = train_bpe(["房间很干净"] * 5, vocab_size=300, min_frequency=1, max_length=16, family="llama")
    stored = to_weight_only_int8(again)
    variant = load_variant(save_variant(stored, tmp_path / "int8", tok, {"format": "int8", "runtime": "weight_only"}))
    assert type(variant) is EnsembleForSequenceClassification
    assert torch.equal(logits(variant).logits, logits(stored).logits)


def test_a_missing_weights_file_is_a_clear_error(tmp_path):
    from trainforge.errors import UserError
    from trainforge.models.load import load_classifier

    EnsembleForSequenceClassification.from_members(members(2)).save_pretrained(tmp_path)
    (tmp_path / "model.ensemble.safetensors").unlink()
    with pytest.raises(UserError, match="model.ensemble.safetensors is missing"):
        load_classifier(tmp_path)


def test_structured_pruning_refuses_an_ensemble():
    from trainforge.compress.prune import block_views
    from trainforge.errors import UserError

    with pytest.raises(UserError, match="compress.structured: prunes one model's blocks and this is an ensemble of 2"):
        block_views(EnsembleForSequenceClassification.from_members(members(2)))
