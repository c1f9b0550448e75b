"""train.chunked_ce: the chunked, recomputed next-token loss against transformers' own LlamaForCausalLM loss
(num_items_in_batch), and proof that no T×V logits tensor is built on the way."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from trainforge.tasks import CausalLMTask, SFTTask
from trainforge.tasks.causal_lm import token_loss, token_validate
from trainforge.train.loop import Weights

V, T, B = 97, 12, 3


def tiny_lm(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=32, max_position_embeddings=64, tie_word_embeddings=tied, pad_token_id=0)
    return LlamaForCausalLM(config).double().float()  # fp32, identical in both copies


def batch_with_padding_and_prompts() -> dict:
    """Right-padded rows of different lengths; the first positions of each row are a prompt (-100)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    labels = ids.clone()
    for row, (length, prompt) in enumerate([(T, 4), (8, 2), (5, 3)]):
        ids[row, length:], mask[row, length:], labels[row, length:] = 0, 0, -100
        labels[row, :prompt] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def grads_of(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_chunked_loss_and_gradients_match_transformers(tied, chunk):
    batch = batch_with_padding_and_prompts()
    n = int((batch["labels"][:, 1:] != -100).sum())
    tokens = n * 1.5  # the global batch's count: this micro-batch is a share of it
    ref_model, ours_model = tiny_lm(tied), tiny_lm(tied)

    ref = ref_model(**batch, num_items_in_batch=tokens).loss
    ref.backward()
    ours = token_loss(ours_model, batch, Weights(examples=1.0, tokens=tokens), chunked_ce=chunk)
    ours.backward()

    assert torch.allclose(ours, ref, atol=1e-5), (float(ours), float(ref))
    ref_grads, our_grads = grads_of(ref_model), grads_of(ours_model)
    assert ref_grads.keys() == our_grads.keys()
    for name, g in ref_grads.items():
        assert torch.allclose(our_grads[name], g, atol=1e-5), name


def test_a_micro_batch_without_targets_still_backpropagates():
    model = tiny_lm(tied=True)
    batch = batch_with_padding_and_prompts()
    batch["labels"] = torch.full_like(batch["labels"], -100)
    loss = token_loss(model, batch, Weights(1.0, 10.0), chunked_ce=4)
    loss.backward()
    assert float(loss.detach()) == 0.0


def test_no_logits_larger_than_a_chunk():
    """The memory claim: lm_head only ever sees `chunk` positions (and the model's own 1-position call),
    never B×T, in the forward and in the recomputing backward."""
    model = tiny_lm(tied=False)
    batch = batch_with_padding_and_prompts()
    rows_seen = []
    model.lm_head.register_forward_hook(lambda m, args, out: rows_seen.append(out.shape[:-1].numel()))
    token_loss(model, batch, Weights(1.0, 10.0), chunked_ce=4).backward()
    n = int((batch["labels"][:, 1:] != -100).sum())
    assert max(rows_seen) == 4 < B * T
    chunks = -(-n // 4)
    assert len(rows_seen) == 1 + 2 * chunks  # the B×1 last-position call, each chunk, each chunk again in backward

    rows_seen.clear()
    token_loss(model, batch, Weights(1.0, 10.0)).backward()  # today's path, for contrast
    assert max(rows_seen) == B * T


def test_validation_is_the_same_with_chunks():
    model = tiny_lm(tied=True)
    task = CausalLMTask(8)
    enc = task.encode([{"text": "x"}], _ByteTokenizer())
    enc.input_ids[:] = enc.token_labels[:] = [[(7 * i + j) % (V - 1) + 1 for j in range(8)] for i in range(5)]
    whole = token_validate(model, enc, 0, batch_size=2)
    chunked = token_validate(model, enc, 0, batch_size=2, chunked_ce=3)
    assert chunked["val_loss"] == pytest.approx(whole["val_loss"], abs=1e-6)


class _ByteTokenizer:
    def __call__(self, texts, add_special_tokens=True, verbose=False):
        return {"input_ids": [[1] * 40 for _ in texts]}


def test_tasks_carry_the_chunk_size_from_config():
    from trainforge.train.config import TrainConfig

    cfg = TrainConfig(task="sft", model="llama-tiny", chunked_ce=256)
    assert SFTTask.from_config(cfg).chunked_ce == 256
    assert SFTTask.from_config(TrainConfig(task="sft")).chunked_ce is None
    assert CausalLMTask(64).chunked_ce is None
