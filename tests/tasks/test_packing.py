"""Padding-free packing for SFT (train.packing): one row per micro-batch, position_ids restarting per example.

Parity: on a tiny Llama in eager and sdpa, the packed batch's loss and gradients equal the padded batch's, which
holds only if transformers' block-diagonal mask (masking_utils.find_packed_sequence_indices) keeps the examples
apart; the negative control packs without restarting positions and must differ, so the parity check can fail.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.train.conftest import PAD, llama_config, make_sft
from trainforge.batching import collate
from trainforge.tasks.sft import SFTTask
from trainforge.train.config import LoopConfig, TrainConfig
from trainforge.train.loop import Weights, fit

IDX = [0, 3, 5, 9, 12]  # five prompt+response examples of different lengths (make_sft)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def _tiny_lm(attn: str):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config(attn_implementation=attn))


def _loss_and_grads(model, task: SFTTask, batch: dict, n_targets: int):
    model.zero_grad(set_to_none=True)
    loss = task.loss(model, batch, Weights(examples=1.0, tokens=n_targets))  # the loop's own call
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_packed_batch_is_one_row_with_restarting_positions_and_the_same_targets():
    enc = make_sft()
    packed = SFTTask(packing=True).batch(enc, IDX, PAD)
    lengths = [len(enc.input_ids[i]) for i in IDX]
    # no attention_mask: masking_utils reads the positions (and only without a KV cache, hence use_cache=False)
    assert set(packed) == {"input_ids", "labels", "position_ids", "use_cache"} and packed["use_cache"] is False
    assert packed["input_ids"].shape == (1, sum(lengths))
    assert packed["position_ids"][0].tolist() == [p for n in lengths for p in range(n)]
    # the global batch's target count (what the loss divides by) is the padded batch's
    padded = collate(enc, IDX, PAD)
    assert int((packed["labels"][:, 1:] != -100).sum()) == int((padded["labels"][:, 1:] != -100).sum())
    assert int((packed["labels"][:, 1:] != -100).sum()) == sum(SFTTask().predicted_tokens(enc)[i] for i in IDX)


def test_packing_off_is_the_padded_collate():
    enc = make_sft()
    off, ref = SFTTask().batch(enc, IDX, PAD), collate(enc, IDX, PAD)
    assert off.keys() == ref.keys() and all(torch.equal(off[k], ref[k]) for k in ref)


@pytest.mark.parametrize("chunked_ce", [None, 7])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_loss_and_gradients_equal_the_padded_ones(attn, chunked_ce):
    enc = make_sft()
    model = _tiny_lm(attn)
    assert model.config._attn_implementation == attn
    padded_task, packed_task = SFTTask(chunked_ce=chunked_ce), SFTTask(chunked_ce=chunked_ce, packing=True)
    padded, packed = padded_task.batch(enc, IDX, PAD), packed_task.batch(enc, IDX, PAD)
    n = int((padded["labels"][:, 1:] != -100).sum())

    # summed loss (tokens=1) and the loop's normalised one (÷ the target count)
    for tokens in (1, n):
        loss_pad, grads_pad = _loss_and_grads(model, padded_task, padded, tokens)
        loss_pack, grads_pack = _loss_and_grads(model, packed_task, packed, tokens)
        # fp32: the ~100-nat sum differs by ~8e-6 in its last bits (summation order), the gradients by < 1e-6
        assert torch.allclose(loss_pack, loss_pad, rtol=1e-6, atol=1e-5), (tokens, loss_pack, loss_pad)
        assert grads_pad.keys() == grads_pack.keys()
        for name in grads_pad:
            assert torch.allclose(grads_pack[name], grads_pad[name], atol=1e-5), name

    # negative control: the same row with positions 0..N-1 is one long sequence, examples attending across
    # boundaries, so its summed loss is not the padded batch's (by ~3e-2 on this random-init model: 3000× the
    # parity gap above)
    flat = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1]).unsqueeze(0))
    loss_flat, _ = _loss_and_grads(model, packed_task, flat, 1)
    loss_pad, _ = _loss_and_grads(model, padded_task, padded, 1)
    assert abs(float(loss_flat) - float(loss_pad)) > 1e-2
    # and with a KV cache transformers skips the packed-mask detection: why the packed batch sets use_cache=False
    loss_cached, _ = _loss_and_grads(model, packed_task, dict(packed, use_cache=True), 1)
    assert abs(float(loss_cached) - float(loss_pad)) > 1e-2


def test_fit_with_packing_learns_and_matches_the_padded_run():
    enc = make_sft()
    cfg = LoopConfig(max_steps=12, batch_size=8, lr=1e-2, weight_decay=0.01, eval_every=1000, log_every=1000,
                     schedule={"warmup_ratio": 0.0, "decay": "constant"})
    padded_model = _tiny_lm("sdpa")
    packed_model = copy.deepcopy(padded_model)
    padded = fit(padded_model, enc, None, cfg, PAD, seed=0, task=SFTTask())
    packed = fit(packed_model, enc, None, cfg, PAD, seed=0, task=SFTTask(packing=True))
    losses = [h["loss"] for h in packed.history]
    assert losses[-1] < losses[0]
    assert losses == pytest.approx([h["loss"] for h in padded.history], abs=1e-4)
    assert packed.tokens == padded.tokens > 0  # real tokens: the packed row's length is the padded mask's sum
    for (name, a), (_, b) in zip(padded_model.named_parameters(), packed_model.named_parameters()):
        assert torch.allclose(a, b, atol=1e-4), name


def test_packing_config_is_for_sft_without_virtual_tokens():
    assert TrainConfig().packing is False
    cfg = TrainConfig(task="sft", packing=True)
    assert SFTTask.from_config(cfg).packing and not SFTTask.from_config(TrainConfig(task="sft")).packing
    assert TrainConfig(task="sft", method="lora", packing=True).packing
    with pytest.raises(ValueError, match="packing=true is for task sft"):
        TrainConfig(task="classification", packing=True)
    for method in ("prompt", "prefix"):
        with pytest.raises(ValueError, match="virtual tokens shift the packed positions"):
            TrainConfig(task="sft", method=method, packing=True)
