"""The grpo: part of the train: section (train.task: grpo). Pure pydantic: importing it pulls in no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainforge.section import Section


class RewardSpec(Section):
    name: str
    """A built-in (exact_answer, label_match, think_format, length_penalty) or a dotted path `pkg.module:function`
    called as fn(prompts, completions, **columns) -> list[float | None]."""
    weight: float = 1.0
    """Weight of this function in the summed reward."""
    kwargs: dict[str, int | float | str | bool] = {}
    """Extra keyword arguments for every call (e.g. length_penalty's max_chars)."""


class GrpoConfig(Section):
    """Group Relative Policy Optimization with verifiable rewards (posttrain/grpo_loop.py)."""

    rewards: list[RewardSpec] = [RewardSpec(name="exact_answer"), RewardSpec(name="think_format", weight=0.5)]
    """Reward functions, summed with their weights."""
    prompt_field: str = "prompt"
    """Record field holding the prompt (framed by the tokenizer's chat template)."""
    group_size: int = Field(8, ge=2)
    """G: completions sampled per prompt; the advantage is each one's reward against its group's."""
    prompts_per_step: int = Field(4, ge=1)
    """Prompts per generation round; a round yields prompts_per_step × G completions."""
    iterations: int = Field(1, ge=1)
    """μ: optimizer updates per generation round (the old log-probs are stored; ρ ≠ 1 from the second on)."""
    max_new_tokens: int = Field(48, ge=1)
    """Tokens sampled per completion (also dr_grpo's constant normaliser)."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of the rollouts."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling of the rollouts."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Advantage normaliser: the group's reward std (GRPO), the batch's, or none (Dr. GRPO: no difficulty bias)."""
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = "dapo"
    """Aggregation: per-sequence mean (grpo), sum ÷ (N × max_new_tokens) (dr_grpo), or token mean (dapo)."""
    epsilon: float = Field(0.2, gt=0)
    """Lower clip of the ratio: 1 − ε."""
    epsilon_high: float | None = None
    """Upper clip: 1 + ε_high (DAPO's clip-higher uses 0.28); null: ε."""
    beta: float = Field(0.0, ge=0)
    """KL weight against the frozen starting model (k3 estimator); 0 keeps no reference model in memory."""
    generation_batch: int = Field(64, ge=1)
    """Rows per decode wave of the batched KV-cache engine."""
    sft_steps: int = Field(0, ge=0)
    """First SFT the model on the records' `sft_response_field` for this many steps (the SFT model is kept
    in model/sft/ for the eval's comparison); 0 starts GRPO from train.model as it is."""
    sft_lr: float | None = None
    """Peak lr of the SFT phase; null uses train.lr."""
    sft_response_field: str = "response"
    """Record field holding the SFT target (the arithmetic built-in's worked solution)."""
    eval_samples: int = Field(4, ge=1)
    """k of pass@k in the eval: samples per held-out prompt."""
    eval_prompts: int = Field(64, ge=1)
    """Held-out prompts scored by the eval."""

    @model_validator(mode="after")
    def _clip(self) -> "GrpoConfig":
        if self.epsilon >= 1:
            raise ValueError(f"epsilon={self.epsilon}: the ratio's lower bound 1 − ε must stay above 0")
        if not self.rewards:
            raise ValueError("rewards: give at least one reward function")
        return self

    @property
    def eps_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high
