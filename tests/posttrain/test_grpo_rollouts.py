"""Rollouts through serve's batched KV-cache engine: left padding, masks and position ids change nothing.

A batch of prompts of different lengths generates exactly what each prompt generates alone (greedy, and sampling
with a fixed seed per row), greedy equals transformers' generate(), and the loss batch's log-probs equal each
sequence's scored alone without padding."""

from __future__ import annotations

import torch

from trainforge.posttrain.rollouts import generate, loss_batch
from trainforge.posttrain.grpo import token_logprobs

PROMPTS = ["hello world", "the quick brown fox jumps over the lazy dog, how are you", "质量太差了", "kv"]


def _ids(tok):
    return [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                    return_dict=False) for p in PROMPTS]


def test_batched_greedy_equals_one_at_a_time_and_generate(llama):
    model, tok = llama
    ids = _ids(tok)
    batched = generate(model, tok, ids, 12, 0.0, 1.0, [0] * len(ids))
    for i, p in enumerate(ids):
        alone = generate(model, tok, [p], 12, 0.0, 1.0, [0])
        assert batched.completion_ids[i] == alone.completion_ids[0]
        x = torch.tensor([p])
        hf = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=12, do_sample=False,
                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[0, len(p):].tolist()
        assert batched.completion_ids[i] == hf[: len(batched.completion_ids[i])]


def test_batched_sampling_with_fixed_seeds_equals_one_at_a_time(llama):
    model, tok = llama
    ids = _ids(tok) * 2  # a group: the same prompt, different seeds → different samples
    seeds = list(range(100, 100 + len(ids)))
    batched = generate(model, tok, ids, 10, 1.0, 0.95, seeds)
    alone = [generate(model, tok, [p], 10, 1.0, 0.95, [s]).completion_ids[0] for p, s in zip(ids, seeds)]
    assert batched.completion_ids == alone
    assert batched.completion_ids[0] != batched.completion_ids[len(PROMPTS)]  # seeds matter
    again = generate(model, tok, ids, 10, 1.0, 0.95, seeds, batch_size=3)  # other waves, same samples
    assert again.completion_ids == batched.completion_ids


def test_loss_batch_log_probs_equal_each_sequence_alone(llama):
    model, tok = llama
    ids = _ids(tok)
    rolled = generate(model, tok, ids, 8, 1.0, 1.0, [7, 8, 9, 10])
    b = loss_batch(rolled.prompt_ids, rolled.completion_ids, tok.pad_token_id)
    assert b.attention_mask.sum(-1).tolist() == [len(p) + len(c) for p, c in zip(rolled.prompt_ids, rolled.completion_ids)]
    with torch.no_grad():
        batched = token_logprobs(model, b.input_ids, b.attention_mask, b.position_ids, b.prompt_width)
        for i, (p, c) in enumerate(zip(rolled.prompt_ids, rolled.completion_ids)):
            x = torch.tensor([p + c])
            alone = token_logprobs(model, x, torch.ones_like(x), torch.arange(x.shape[1])[None], len(p))[0]
            got = batched[i, : len(c)]
            assert torch.allclose(got, alone, atol=1e-5), (i, (got - alone).abs().max())
            assert b.completion_mask[i].sum() == len(c)
