"""train.dpo: the preference recipe's settings (train.task: dpo). No torch here: the spec modules import it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainforge.section import Section


class DpoConfig(Section):
    loss: Literal["sigmoid", "ipo", "hinge", "robust", "simpo", "orpo"] = "sigmoid"
    """sigmoid (DPO) | ipo | hinge (SLiC) | robust (rDPO, noisy labels); reference-free: simpo | orpo (no
    reference log-probs at all). posttrain/dpo.py has the formulas."""
    beta: float = Field(0.1, gt=0)
    """How far the policy may move from the reference: higher keeps it closer (DPO 0.1-0.5; SimPO 2-10)."""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """Assumed share of flipped preference labels: sigmoid (cDPO), robust, simpo. 0 trusts every pair."""
    simpo_gamma: float = 0.5
    """loss=simpo: the target reward margin γ (the loss subtracts γ/β from the per-token log-prob gap, as TRL)."""
    orpo_lambda: float = Field(0.1, gt=0)
    """loss=orpo: weight λ of the odds-ratio term beside the chosen answer's NLL (TRL's ORPO `beta`)."""
    pairs: Literal["given", "labels", "samples"] = "labels"
    """given: records with prompt/chosen/rejected; labels: the correct label's answer chosen, every other label's
    answer rejected (train.sft.template and label_names frame them); samples: several sampled answers per prompt
    scored by `judge`, the best chosen and the worst rejected."""
    prompt_field: str = "prompt"
    """pairs=given: the record field with the prompt (a string or chat messages)."""
    chosen_field: str = "chosen"
    """pairs=given: the preferred answer (a string, or messages ending with the assistant's)."""
    rejected_field: str = "rejected"
    """pairs=given: the dispreferred answer."""
    judge: str | None = None
    """pairs=samples: `package.module:function`, called `fn(prompts, completions, **columns) -> list[float | None]`."""
    samples_per_prompt: int = Field(4, ge=2)
    """pairs=samples: answers sampled per prompt (more: better pairs, more generation time)."""
    sample_temperature: float = Field(1.0, gt=0)
    """pairs=samples: sampling temperature."""
    max_pairs: int | None = Field(None, ge=1)
    """Train on at most this many pairs (a seeded sample); each costs a reference forward before training. null: all."""
    max_val_pairs: int = Field(256, ge=1)
    """Held-out pairs scored at each evaluation (a seeded sample of the val split's)."""
    sft_epochs: float = Field(0.0, ge=0)
    """Supervised epochs (train.sft framing, same records) before DPO, in this stage; the SFT model is the
    reference and is kept in model/reference/ for eval. 0: train.model is already instruction-tuned."""
    sft_lr: float | None = None
    """Peak learning rate of that SFT phase; null uses train.lr."""
    precompute_reference: bool = True
    """Score every pair with the reference once before training (stored in checkpoints/train/, reused on
    --resume), so only the policy is in memory while training. false keeps a frozen copy loaded beside it."""
    reference_batch_size: int = Field(16, ge=1)
    """Pairs per forward while the reference log-probs are computed."""

    @model_validator(mode="after")
    def _judge_for_samples(self) -> "DpoConfig":
        if self.pairs == "samples" and not self.judge:
            raise ValueError("dpo.pairs=samples needs dpo.judge: a 'package.module:function' that scores completions")
        return self
