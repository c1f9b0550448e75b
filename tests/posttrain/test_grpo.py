"""GRPO's arithmetic: advantages on constructed rewards (tied groups, skipped samples, the three scalings), each
loss aggregation by hand and against TRL's GRPOTrainer._compute_loss, the k3 KL, and accumulation = one batch.

TRL's advantage code is inline in GRPOTrainer._generate_and_score_completions (it needs a whole trainer, a
dataset and a generation backend), so the advantages are checked against hand computations of the same formulas,
using TRL's own `nanstd`; the loss is TRL's `_compute_loss` itself, called with the attributes it reads and a
real accelerate Accelerator, on log-probs we pass in."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from trainforge.posttrain.grpo import group_advantages, k3_kl, policy_loss
from trainforge.posttrain.rewards import Reward, score

EPS = 1e-4


def test_group_advantages_by_hand_with_a_tied_group():
    r = [1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5]  # group 2 ties: no signal
    adv = group_advantages(r, 4, "group")
    std = math.sqrt(sum((x - 0.5) ** 2 for x in r[:4]) / 3)  # unbiased, as TRL
    expected = [(x - 0.5) / (std + EPS) for x in r[:4]] + [0.0] * 4
    assert adv.advantages.tolist() == pytest.approx(expected, rel=1e-6)
    assert adv.zero_std.tolist() == [False] * 4 + [True] * 4
    assert float(adv.zero_std.float().mean()) == 0.5  # frac_reward_zero_std
    assert adv.advantages[4:].abs().sum() == 0


def test_scale_none_is_dr_grpo_and_batch_uses_the_batch_std():
    r = [3.0, 1.0, 2.0, 2.0]
    none = group_advantages(r, 2, "none")
    assert none.advantages.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0])
    assert none.zero_std.tolist() == [False, False, True, True]  # the tie is still detected
    batch = group_advantages(r, 2, "batch")
    std = torch.tensor(r).std().item()
    assert batch.advantages.tolist() == pytest.approx([1 / (std + EPS), -1 / (std + EPS), 0.0, 0.0], rel=1e-6)
    assert not batch.zero_std.any()


def test_trl_nanstd_agrees():
    from trl.trainer.utils import nanstd

    r = torch.tensor([[1.0, float("nan"), 0.0, 0.0], [2.0, 4.0, 4.0, 8.0]])
    from trainforge.posttrain.grpo import _nanstd

    assert torch.allclose(_nanstd(r, dim=1), nanstd(r, dim=1))


def test_none_reward_skips_the_sample():
    def exact(prompts, completions, **_):
        return [1.0 if c == "right" else 0.0 if c == "wrong" else None for c in completions]

    def polite(prompts, completions, **_):
        return [None if c == "??" else 0.5 for c in completions]

    s = score([Reward("exact", exact, 2.0), Reward("polite", polite, 1.0)], ["p"] * 4,
              ["right", "wrong", "??", "unsure"], {})
    assert s.total == [2.5, 0.5, None, 0.5]  # "unsure": only polite answered; "??": nobody did → skipped
    adv = group_advantages(s.total, 4, "none")
    valid = [2.5, 0.5, 0.5]
    mean = sum(valid) / 3
    assert adv.valid.tolist() == [True, True, False, True]
    assert adv.advantages.tolist() == pytest.approx([2.5 - mean, 0.5 - mean, 0.0, 0.5 - mean], rel=1e-6)


def _batch(seed=0, B=4, T=5):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g) * 3
    old = logp + (torch.rand(B, T, generator=g) - 0.5) * 0.8  # ratios well outside [0.8, 1.2] for some tokens
    ref = logp + (torch.rand(B, T, generator=g) - 0.5)
    mask = torch.ones(B, T)
    mask[0, 3:] = 0
    mask[2, 1:] = 0
    adv = torch.tensor([1.0, -0.5, 2.0, -1.5])
    return logp, old, ref, mask, adv


def _by_hand(logp, old, ref, mask, adv, loss_type, eps, eps_high, beta, L):
    B, T = len(logp), len(logp[0])
    per_seq, total, tokens = [], 0.0, 0
    for i in range(B):
        s, n = 0.0, 0
        for t in range(T):
            if not mask[i][t]:
                continue
            ratio = math.exp(logp[i][t] - old[i][t])
            clipped = min(max(ratio, 1 - eps), 1 + eps_high)
            loss = -min(ratio * adv[i], clipped * adv[i])
            d = ref[i][t] - logp[i][t]
            loss += beta * (math.exp(d) - d - 1)
            s, n = s + loss, n + 1
        per_seq.append(s / max(1, n))
        total, tokens = total + s, tokens + n
    return {"grpo": sum(per_seq) / B, "dr_grpo": total / (B * L), "dapo": total / tokens}[loss_type]


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_each_aggregation_by_hand(loss_type, beta):
    logp, old, ref, mask, adv = _batch()
    got = policy_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.28, loss_type=loss_type, step_sequences=4,
                      step_tokens=int(mask.sum()), max_completion_length=8, beta=beta, ref_logp=ref)
    want = _by_hand(logp.tolist(), old.tolist(), ref.tolist(), mask.tolist(), adv.tolist(), loss_type, 0.2, 0.28, beta, 8)
    assert float(got.loss) == pytest.approx(want, rel=1e-5)


def _trl_loss(loss_type, beta, logp, old, ref, mask, adv, max_len, eps, eps_high):
    """TRL's GRPOTrainer._compute_loss on our log-probs: the model forward is replaced by the tensor we pass."""
    from collections import defaultdict

    from accelerate import Accelerator
    from trl import GRPOTrainer

    B, T = logp.shape
    leaf = logp.clone().requires_grad_(True)
    ns = SimpleNamespace(
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        loss_type=loss_type, epsilon_low=eps, epsilon_high=eps_high, use_vllm=False, vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1, max_completion_length=max_len,
        accelerator=Accelerator(cpu=True), _entropy_bonus_enabled=False, aux_loss_enabled=False,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (leaf, torch.zeros_like(leaf), None),
    )
    inputs = {"prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask.long(),
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    loss = GRPOTrainer._compute_loss(ns, None, inputs)
    loss.backward()
    return loss.detach(), leaf.grad, ns._metrics["train"]


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_gradient_and_clip_ratios_equal_trls(loss_type, beta):
    pytest.importorskip("trl", reason="TRL is a test-only dependency (pip install -e '.[dev]')")
    logp, old, ref, mask, adv = _batch(seed=3)
    want, want_grad, trl_metrics = _trl_loss(loss_type, beta, logp, old, ref, mask, adv, 8, 0.2, 0.28)
    leaf = logp.clone().requires_grad_(True)
    got = policy_loss(leaf, old, adv, mask, epsilon=0.2, epsilon_high=0.28, loss_type=loss_type, step_sequences=4,
                      step_tokens=int(mask.sum()), max_completion_length=8, beta=beta, ref_logp=ref)
    got.loss.backward()
    assert torch.allclose(got.loss.detach(), want, atol=1e-6)
    assert torch.allclose(leaf.grad, want_grad, atol=1e-6)
    n = mask.sum()
    assert float(got.stats["clip_low"] / n) == pytest.approx(trl_metrics["clip_ratio/low_mean"][0], abs=1e-6)
    assert float(got.stats["clip_high"] / n) == pytest.approx(trl_metrics["clip_ratio/high_mean"][0], abs=1e-6)
    assert float(got.stats["clip_region"] / n) == pytest.approx(trl_metrics["clip_ratio/region_mean"][0], abs=1e-6)
    if beta:
        assert float(got.stats["kl"] / n) == pytest.approx(trl_metrics["kl"][0], rel=1e-5)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_micro_batches_add_up_to_the_whole_batch(loss_type):
    logp, old, ref, mask, adv = _batch(seed=5)
    kw = dict(epsilon=0.2, epsilon_high=0.2, loss_type=loss_type, step_sequences=4, step_tokens=int(mask.sum()),
              max_completion_length=8, beta=0.1)
    whole = policy_loss(logp, old, adv, mask, ref_logp=ref, **kw).loss
    parts = sum(policy_loss(logp[s], old[s], adv[s], mask[s], ref_logp=ref[s], **kw).loss for s in (slice(0, 1), slice(1, 4)))
    assert float(parts) == pytest.approx(float(whole), rel=1e-6)


def test_the_loss_is_minus_the_mean_advantage_but_the_gradient_is_not_zero():
    """β = 0, one iteration: ρ = 1, so every token's loss is −A and the loss is 0 for centred advantages."""
    adv = group_advantages([1.0, 0.0, 0.0, 1.0], 4, "group").advantages
    logp = (-torch.rand(4, 3, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    parts = policy_loss(logp, None, adv, torch.ones(4, 3), epsilon=0.2, epsilon_high=0.2, loss_type="grpo",
                        step_sequences=4, step_tokens=12, max_completion_length=3)
    assert abs(float(parts.loss.detach())) < 1e-6
    parts.loss.backward()
    assert torch.allclose(logp.grad, -adv[:, None].expand(4, 3) / 12)  # −A_i / (|o_i| · N) per token
    assert logp.grad.abs().sum() > 0


def test_k3_is_non_negative_and_zero_at_the_reference():
    logp = torch.linspace(-3, 0, 7)
    assert torch.all(k3_kl(logp, logp.flip(0)) >= 0)
    assert torch.equal(k3_kl(logp, logp), torch.zeros(7))
