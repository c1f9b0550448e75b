"""The DPO family: sequence log-probs of an answer given its prompt, and the losses built on them.

One forward per micro-batch scores every pair's chosen AND rejected answer (2B rows, chosen first, as TRL does):

    row        pad pad  <s><|user|>…<|assistant|>\\n  answer … </s>
    attention   0   0    1 …                           1 …       1      left padding: every answer ends at the right edge
    position    0   0    0 1 2 …                       …                positions count real tokens only, so a padded
                                                                         row sees exactly what it sees alone
    completion  0   0    0 …                      0    1 …       1      the tokens whose log-probs are summed

Without position_ids a left-padded row's first real token would sit at position `pads`, and its log-probs would
change with its batch-mates (tests/posttrain/test_dpo.py proves batched equals one-at-a-time, and that leaving
position_ids out breaks it).

Losses, with  Δ = (log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))  (sums over answer tokens), β, ε (label
smoothing); each equals TRL 1.16's on the same batch (tests/posttrain/test_dpo_trl_parity.py):

    sigmoid  −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)                  DPO; ε > 0 is conservative DPO (cDPO)
    hinge    max(0, 1 − βΔ)                                    SLiC
    ipo      (Δ_c/|c| − Δ_r/|r| − 1/(2β))²                     IPO, TRL's per-token normalisation
    robust   (−(1−ε)·log σ(βΔ) + ε·log σ(−βΔ)) / (1 − 2ε)      rDPO: unbiased under a share ε of flipped labels
    simpo    −(1−ε)·log σ(β(ā_c − ā_r) − γ) − ε·log σ(−…)     reference-free; ā = mean log-prob per answer token
    orpo     NLL(chosen) − λ·log σ(log odds(c) − log odds(r)) reference-free; odds(y) = p/(1−p) of ā; the NLL is
                                                               over the chosen row's prompt and answer, as TRL's

Logged as TRL names them: rewards/chosen = β·(log π(c) − log π_ref(c)) (simpo, orpo: β·ā_c, λ·ā_c), rewards/rejected,
rewards/margins (chosen − rejected), rewards/accuracies (share of pairs whose chosen reward is higher),
logps/chosen and logps/rejected (the policy's; simpo and orpo: per-token means).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

REFERENCE_FREE = ("simpo", "orpo")
LOSSES = ("sigmoid", "hinge", "ipo", "robust", "simpo", "orpo")


@dataclass
class LossSettings:
    kind: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    orpo_lambda: float = 0.1


def pair_batch(prompts: list[list[int]], chosen: list[list[int]], rejected: list[list[int]], pad_id: int) -> dict:
    """Left-padded rows [prompt + chosen …, prompt + rejected …] with attention_mask, position_ids and
    completion_mask (1 on the answer tokens), each 2B × T."""
    rows = [p + c for p, c in zip(prompts, chosen)] + [p + r for p, r in zip(prompts, rejected)]
    answers = [len(c) for c in chosen] + [len(r) for r in rejected]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, n) in enumerate(zip(rows, answers)):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
        completion[i, width - n:] = 1
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": position, "completion_mask": completion}


def token_logps(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[t+1] | ≤ t) per position, B × (T−1), in fp32 (logsumexp: no B×T×V log-softmax kept)."""
    logits = logits[:, :-1].float()
    target = ids[:, 1:]
    return logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


@dataclass
class RowLogps:
    """Per row of a pair batch (2B: chosen rows, then rejected rows)."""

    answer: torch.Tensor
    """Σ log-probs of the answer tokens."""
    answer_tokens: torch.Tensor
    row: torch.Tensor
    """Σ log-probs of every predicted real token, prompt included (ORPO's NLL, as TRL computes it)."""
    row_tokens: torch.Tensor


def sequence_logps(net, batch: dict, position_ids: bool = True) -> RowLogps:
    """Log-probs per row of a `pair_batch`. position_ids=False is the bug this guards against (a left-padded
    row shifted by its padding), kept for the test that shows it."""
    ids = batch["input_ids"]
    kwargs = {"input_ids": ids, "attention_mask": batch["attention_mask"], "use_cache": False}
    if position_ids:
        kwargs["position_ids"] = batch["position_ids"]
    width = ids.shape[1]
    logits = net(**kwargs).logits[:, -width:]  # a prompt-tuned model prepends its virtual tokens' logits: drop them
    per_token = token_logps(logits, ids)  # 2B, T-1 fp32
    answer = batch["completion_mask"][:, 1:].to(per_token.dtype)
    mask = batch["attention_mask"]
    real = (mask[:, 1:] * mask[:, :-1]).to(per_token.dtype)  # a target, predicted from a real token (not a pad)
    return RowLogps((per_token * answer).sum(-1), answer.sum(-1), (per_token * real).sum(-1), real.sum(-1))


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x < 0, stable on both sides of −ln 2 (Mächler 2012)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def preference_loss(s: LossSettings, chosen: torch.Tensor, rejected: torch.Tensor, n_chosen: torch.Tensor,
                    n_rejected: torch.Tensor, ref_chosen: torch.Tensor | None = None,
                    ref_rejected: torch.Tensor | None = None, chosen_row: torch.Tensor | None = None,
                    chosen_row_tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(per-pair loss B, metrics). chosen/rejected: the policy's summed answer log-probs; n_*: answer tokens;
    ref_*: the reference's summed log-probs (unused by simpo and orpo); chosen_row(_tokens): ORPO's NLL over the
    whole chosen row, written per pair (its Σ −log p × B ÷ the batch's tokens) so the batch mean is TRL's token mean."""
    eps = s.label_smoothing
    if s.kind in REFERENCE_FREE:
        avg_c, avg_r = chosen / n_chosen.clamp(min=1), rejected / n_rejected.clamp(min=1)
        if s.kind == "simpo":
            z = s.beta * (avg_c - avg_r - s.simpo_gamma / s.beta)
            loss = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
            scale = s.beta
        else:
            log_odds = (avg_c - avg_r) - (log1mexp(avg_c) - log1mexp(avg_r))
            nll = -chosen_row * chosen_row.numel() / chosen_row_tokens.sum().clamp(min=1)
            loss = nll - s.orpo_lambda * F.logsigmoid(log_odds)
            scale = s.orpo_lambda
        r_c, r_r = scale * avg_c.detach(), scale * avg_r.detach()
        logged_c, logged_r = avg_c.detach(), avg_r.detach()
    else:
        ratio_c, ratio_r = chosen - ref_chosen, rejected - ref_rejected
        delta = ratio_c - ratio_r
        b = s.beta
        if s.kind == "sigmoid":
            loss = -(1 - eps) * F.logsigmoid(b * delta) - eps * F.logsigmoid(-b * delta)
        elif s.kind == "hinge":
            loss = torch.relu(1 - b * delta)
        elif s.kind == "ipo":
            loss = (ratio_c / n_chosen.clamp(min=1) - ratio_r / n_rejected.clamp(min=1) - 1 / (2 * b)) ** 2
        elif s.kind == "robust":
            loss = (-(1 - eps) * F.logsigmoid(b * delta) + eps * F.logsigmoid(-b * delta)) / (1 - 2 * eps)
        else:
            raise ValueError(f"unknown DPO loss {s.kind!r}; one of {', '.join(LOSSES)}")
        r_c, r_r = b * ratio_c.detach(), b * ratio_r.detach()
        logged_c, logged_r = chosen.detach(), rejected.detach()
    metrics = {"rewards/chosen": r_c, "rewards/rejected": r_r, "rewards/margins": r_c - r_r,
               "rewards/accuracies": (r_c > r_r).float(), "logps/chosen": logged_c, "logps/rejected": logged_r}
    return loss, metrics


def pair_loss(s: LossSettings, out: RowLogps, ref_chosen: torch.Tensor | None = None,
              ref_rejected: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`preference_loss` on a pair batch's rows (chosen rows first, then rejected)."""
    chosen, rejected = out.answer.chunk(2)
    n_chosen, n_rejected = out.answer_tokens.chunk(2)
    row, row_tokens = out.row.chunk(2)[0], out.row_tokens.chunk(2)[0]
    return preference_loss(s, chosen, rejected, n_chosen, n_rejected, ref_chosen, ref_rejected, row, row_tokens)
