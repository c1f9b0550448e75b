"""GRPO's arithmetic: group advantages, per-token log-probs, the clipped surrogate, the k3 KL, three aggregations.

    prompt p ──G samples──▶ o_1 … o_G ──rewards──▶ r_1 … r_G
    advantage  A_i = r_i − mean(r_group)            scale_rewards: none  (Dr. GRPO: no std division)
                   ÷ (std(r_group) + 1e-4)          scale_rewards: group (GRPO)
                   ÷ (std(r_batch) + 1e-4)          scale_rewards: batch
    per token  ρ_t = exp(logp_t − logp_old_t)       (1 on the first iteration over a generation)
               ℓ_t = −min(ρ_t A, clip(ρ_t, 1−ε, 1+ε_high) A) + β · KL_t
               KL_t = exp(ref_t − logp_t) − (ref_t − logp_t) − 1        (k3: unbiased, ≥ 0)
    loss       grpo     mean over sequences of (Σ_t ℓ_t / |o_i|)          (long answers count less per token)
               dr_grpo  Σ_i Σ_t ℓ_t / (N · max_completion_length)          (no length bias)
               dapo     Σ_i Σ_t ℓ_t / Σ_i |o_i|                            (token-level mean over the batch)

Why the loss hovers near 0: with β = 0 and one iteration per generation, ρ = 1 (the old log-probs ARE the
current ones, detached), so ℓ_t = −A_i and the loss is −(mean advantage) — zero by construction, since
advantages are centred per group. Its gradient is not zero: ∇ρ_t = ∇logp_t, so the step is
−Σ A_i ∇logp(o_i), pushing up the better-than-average samples. A group whose rewards all tie has A = 0:
no gradient from it (counted in `frac_reward_zero_std`).

The formulas follow TRL's GRPOTrainer (advantages in _generate_and_score_completions, loss in _compute_loss),
with one difference: a micro-batch's share is divided by the *step's* sequence/token counts (passed in),
so gradient accumulation gives exactly the whole batch's gradient whatever the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STD_EPS = 1e-4  # TRL's: keeps a near-tied group's advantages finite


@dataclass
class Advantages:
    advantages: torch.Tensor
    """(N,) float; 0 for skipped samples."""
    zero_std: torch.Tensor
    """(N,) bool: the sample's normaliser (its group's std, or the batch's) is 0 — it carries no signal."""
    valid: torch.Tensor
    """(N,) bool: some reward function scored the sample."""


def _nanstd(x: torch.Tensor, dim=None) -> torch.Tensor:
    """Unbiased std ignoring NaNs (TRL's nanstd)."""
    mean = torch.nanmean(x, dim=dim, keepdim=dim is not None)
    var = torch.nanmean((x - mean) ** 2, dim=dim)
    count = torch.sum(~torch.isnan(x), dim=dim)
    return torch.sqrt(var * count / (count - 1))


def group_advantages(rewards: list[float | None] | torch.Tensor, group_size: int, scale_rewards: str = "group") -> Advantages:
    """rewards: (N,) with N = prompts × G, each prompt's G samples adjacent; None / NaN: skipped."""
    r = torch.tensor([float("nan") if v is None else v for v in rewards], dtype=torch.float64) \
        if not isinstance(rewards, torch.Tensor) else rewards.to(torch.float64)
    if r.numel() % group_size:
        raise ValueError(f"{r.numel()} rewards do not split into groups of {group_size}")
    grouped = r.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    if scale_rewards in ("group", "none"):  # "none" still needs the std to tell a tied group
        std = _nanstd(grouped, dim=1).repeat_interleave(group_size) if group_size > 1 else torch.zeros_like(r)
    elif scale_rewards == "batch":
        std = _nanstd(r).expand_as(r) if r.numel() > 1 else torch.zeros_like(r)
    else:
        raise ValueError(f"scale_rewards must be group, batch or none, not {scale_rewards!r}")
    adv = r - mean
    if scale_rewards != "none":
        adv = adv / (std + STD_EPS)
    zero_std = torch.isclose(torch.nan_to_num(std, nan=0.0), torch.zeros_like(std))
    return Advantages(torch.nan_to_num(adv, nan=0.0).float(), zero_std, ~torch.isnan(r))


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                   completion_start: int) -> torch.Tensor:
    """(B, T_c) log-prob of each completion token under `model`; the batch is [left-padded prompt | completion
    right-padded], completion_start = the prompt width. position_ids count real tokens only (pads don't shift)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=False).logits[:, completion_start - 1 : -1].float()  # (B, T_c, V): token t predicts t+1
    targets = input_ids[:, completion_start:]
    return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(π‖π_ref) per token: exp(ref − logp) − (ref − logp) − 1."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


@dataclass
class LossParts:
    loss: torch.Tensor
    """This micro-batch's share of the step's loss (sums to the whole batch's over micro-batches)."""
    stats: dict[str, torch.Tensor]
    """Sums over this micro-batch's completion tokens (divide by the step's token count): kl, clip_low,
    clip_high, clip_region; and per-sequence clipped shares (clip_low_seq, clip_high_seq)."""


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor | None, advantages: torch.Tensor, mask: torch.Tensor, *,
                epsilon: float, epsilon_high: float, loss_type: str, step_sequences: int, step_tokens: int,
                max_completion_length: int, beta: float = 0.0, ref_logp: torch.Tensor | None = None) -> LossParts:
    """logp, old_logp, ref_logp, mask: (B, T_c); advantages: (B,). old_logp None: one iteration, on-policy
    (ρ = 1 in value, ∇ρ = ∇logp). step_sequences / step_tokens: the whole step's sequences and mask sum."""
    mask = mask.to(logp.dtype)
    old = logp.detach() if old_logp is None else old_logp
    ratio = torch.exp(logp - old)
    a = advantages[:, None].to(logp.dtype)
    per_token = -torch.min(ratio * a, torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high) * a)
    kl = None
    if beta != 0.0:
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / step_sequences
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / (step_sequences * max_completion_length)
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / max(1, step_tokens)
    else:
        raise ValueError(f"loss_type must be grpo, dr_grpo or dapo, not {loss_type!r}")
    with torch.no_grad():
        low = ((ratio < 1 - epsilon) & (a < 0)).to(logp.dtype)
        high = ((ratio > 1 + epsilon_high) & (a > 0)).to(logp.dtype)
        seq_len = mask.sum(-1).clamp(min=1.0)
        stats = {"clip_low": (low * mask).sum(), "clip_high": (high * mask).sum(),
                 "clip_region": (torch.maximum(low, high) * mask).sum(),
                 "clip_low_seq": (low * mask).sum(-1) / seq_len, "clip_high_seq": (high * mask).sum(-1) / seq_len,
                 "kl": (kl.detach() * mask).sum() if kl is not None else torch.zeros(())}
    return LossParts(loss, stats)
