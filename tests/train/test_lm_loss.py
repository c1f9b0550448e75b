"""train.lm_loss: the auxiliary next-token loss beside the classifier's, checked against transformers' own causal-LM loss."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from trainforge.config import validate_config
from trainforge.errors import UserError
from trainforge.train.lm_loss import auxiliary_loss, output_projection
from trainforge.train.loop import Weights

SHAPE = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=2, pad_token_id=0, max_position_embeddings=32)


def _saved_lm(tmp_path, tied: bool):
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(**SHAPE, tie_word_embeddings=tied)).eval()
    lm.save_pretrained(tmp_path)
    clf = LlamaForSequenceClassification.from_pretrained(tmp_path, num_labels=2).eval()
    return lm, clf


WHOLE = Weights(examples=1.0, tokens=7)  # _batch() is the whole batch: 5 + 2 next-token predictions


def _batch():
    ids = torch.tensor([[5, 9, 12, 7, 3, 8], [4, 11, 6, 0, 0, 0]])  # right-padded, as the loop collates
    mask = (ids != 0).long()
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([1, 0])}


@pytest.mark.parametrize("tied", [True, False])
def test_auxiliary_term_equals_the_causal_lm_loss_of_the_same_weights(tmp_path, tied):
    lm, clf = _saved_lm(tmp_path, tied)
    batch = _batch()
    projection = output_projection(clf, tmp_path)
    assert torch.equal(projection, lm.lm_head.weight.detach())
    assert (projection is clf.get_input_embeddings().weight) == tied  # tied: trains with the body; untied: fixed
    with torch.no_grad():
        total = auxiliary_loss(0.5, projection)(clf, batch, WHOLE)
        own = clf(**batch).loss
        reference = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss
    assert total == pytest.approx(float(own + 0.5 * reference), abs=1e-5)


def test_gradient_of_the_auxiliary_term_reaches_the_tied_embedding(tmp_path):
    _, clf = _saved_lm(tmp_path, tied=True)
    clf.train()
    aux = auxiliary_loss(1.0, output_projection(clf, tmp_path))
    batch = _batch()
    clf(**batch).loss.backward()
    plain = clf.get_input_embeddings().weight.grad.clone()
    clf.zero_grad()
    aux(clf, batch, WHOLE).backward()
    grad = clf.get_input_embeddings().weight.grad
    assert not torch.allclose(grad, plain)
    assert grad[40:].abs().sum() > 0  # rows of tokens absent from the batch: only the softmax over the vocabulary reaches them


def test_fine_tuning_with_the_auxiliary_loss_keeps_the_body_a_language_model(tmp_path):
    """The point of the option: after the same fine-tune, the body's next-token loss on the text is lower."""
    from trainforge.train.config import TrainConfig
    from trainforge.train.loop import Encoded, fit

    lm, _ = _saved_lm(tmp_path, tied=True)
    gen = torch.Generator().manual_seed(1)
    counting = lambda start, n: [(start + i) % 63 + 1 for i in range(n)]  # noqa: E731 - text with a rule to learn
    starts, lengths = torch.randint(0, 63, (48,), generator=gen).tolist(), torch.randint(4, 12, (48,), generator=gen).tolist()
    data = Encoded([counting(s, n) for s, n in zip(starts, lengths)], [s % 2 for s in starts])
    held_out = torch.tensor([counting(3, 10), counting(40, 10)])
    cfg = TrainConfig(model="unused", max_steps=30, batch_size=8, lr=3e-3, log_every=1000)

    def next_token_loss(clf) -> float:
        body = LlamaForCausalLM(lm.config)
        body.model.load_state_dict(clf.model.state_dict())
        body.tie_weights()
        body.eval()
        with torch.no_grad():
            return float(body(input_ids=held_out, labels=held_out).loss)

    losses = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        clf = LlamaForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
        loss_fn = auxiliary_loss(weight, output_projection(clf, tmp_path)) if weight else None
        fit(clf, data, None, cfg, 0, seed=0, stage=f"lm_loss {weight}", loss_fn=loss_fn)
        losses[weight] = next_token_loss(clf)
    assert losses[1.0] < losses[0.0] - 0.1


def test_bodies_without_a_next_token_head_are_refused(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    encoder = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=32))
    with pytest.raises(UserError, match="train.lm_loss: the body is a bert encoder"):
        output_projection(encoder, None)
    untied_fresh = LlamaForSequenceClassification(LlamaConfig(**SHAPE, tie_word_embeddings=False))
    with pytest.raises(UserError, match="train.lm_loss: .* untied and a fresh preset has no trained lm_head"):
        output_projection(untied_fresh, None)


@pytest.mark.parametrize("train", [{"task": "sft"}, {"method": "prompt"}, {"method": "prefix"}])
def test_lm_loss_is_for_classifiers_whose_input_is_the_text(train):
    with pytest.raises(UserError, match="lm_loss=0.5 is for task classification"):
        validate_config({"name": "x", "train": {"lm_loss": 0.5, **train}})
