"""Pruning: requested sparsity is what the weights show; structured pruning really removes parameters."""

from __future__ import annotations

import pytest
import torch

from tests.compress.conftest import batch_of, tiny_bert, tiny_llama, token_data
from trainforge.compress.load import load_variant, read_meta, save_variant
from trainforge.compress.prune import body_linears, magnitude_prune, measured_sparsity, structured_prune
from trainforge.errors import UserError


@pytest.mark.parametrize("sparsity", [0.3, 0.7])
def test_magnitude_sparsity_matches_request_and_masks_are_folded(sparsity):
    model = tiny_bert()
    pruned = magnitude_prune(model, sparsity)
    assert measured_sparsity(pruned) == pytest.approx(sparsity, abs=1e-3)
    assert measured_sparsity(model) == 0.0  # the original is untouched
    for _, lin in body_linears(pruned):
        assert not hasattr(lin, "weight_mask") and isinstance(lin.weight, torch.nn.Parameter)
    # global ranking: every surviving weight is at least as large as every removed one
    kept = torch.cat([lin.weight[lin.weight != 0].abs() for _, lin in body_linears(pruned)])
    removed = torch.cat([o.weight[p.weight == 0].abs() for (_, o), (_, p) in zip(body_linears(model), body_linears(pruned))])
    assert kept.min() >= removed.max()


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("build", [tiny_bert, tiny_llama, lambda: tiny_llama(kv_heads=4)])
def test_structured_pruning_shrinks_and_still_runs(build, tmp_path):
    model, data = build(), token_data(32)
    batches = [batch_of(data, 16)]
    pruned, structure = structured_prune(model, 0.5, batches)
    assert n_params(pruned) < n_params(model)
    assert structure["intermediate_size"] == 32  # 64 neurons, half removed in every layer
    assert structure["attention_heads"] < model.config.num_attention_heads
    batch = batch_of(token_data(8, seed=2))
    with torch.no_grad():
        out = pruned(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert out.shape == (8, 2) and torch.isfinite(out).all()

    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]")), pad_token="[PAD]")
    fmt = "hf" if structure["family"] == "llama" else "hf-structured"
    save_variant(pruned, tmp_path / "v", tok, {"format": fmt, "structure": structure})
    reloaded = load_variant(tmp_path / "v")
    assert read_meta(tmp_path / "v")["format"] == fmt
    with torch.no_grad():
        again = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(out, again, atol=1e-6)
    assert n_params(reloaded) == n_params(pruned)


def test_structured_keeps_the_most_important_heads():
    """A head whose output projection is zeroed contributes nothing: it must be the one removed."""
    model = tiny_bert()
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.output.dense.weight[:, 8:16] = 0.0  # head 1 (head_dim 8) writes nothing
    _, structure = structured_prune(model, 0.25, [batch_of(token_data(32), 16)])
    assert structure["kept_heads"] == [[0, 2, 3], [0, 2, 3]]


def test_gqa_prunes_whole_key_value_groups():
    pruned, structure = structured_prune(tiny_llama(kv_heads=2), 0.5, [batch_of(token_data(16), 8)])
    assert (structure["attention_heads"], structure["key_value_heads"]) == (2, 1)
    assert pruned.config.num_attention_heads // pruned.config.num_key_value_heads == 2


def test_unknown_architecture_is_a_user_error():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, pad_token_id=0))
    with pytest.raises(UserError, match="structured"):
        structured_prune(model, 0.3, [])
