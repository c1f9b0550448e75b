"""The distill: section: R1-style distillation of a teacher's reasoning traces (`trainforge distill-traces`).
Pure pydantic: importing it pulls in no torch and no openai."""

from __future__ import annotations

from pydantic import Field

from trainforge.posttrain.grpo_config import RewardSpec
from trainforge.section import Section


class DistillConfig(Section):
    """Ask a teacher at an OpenAI-compatible endpoint; keep the traces whose answers the rewards verify."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """The teacher's OpenAI-compatible API: a `trainforge serve` of a bigger run, vLLM, or a hosted model."""
    model: str | None = None
    """Model name sent with each request; null: the first model the endpoint lists."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (a local server needs none)."""
    rewards: list[RewardSpec] = [RewardSpec(name="exact_answer")]
    """Reward functions that verify a trace (the same ones GRPO uses)."""
    min_reward: float = 1.0
    """Keep a trace whose weighted reward reaches this; one no function scores is rejected (unscored)."""
    prompt_field: str = "prompt"
    """Input field holding the prompt; every other field is passed to the rewards and copied to the record."""
    system_prompt: str | None = None
    """A system message sent before each prompt (e.g. asking for <think> reasoning); null: none."""
    samples: int = Field(1, ge=1)
    """Teacher answers per prompt; each verified one becomes a record (rejection sampling)."""
    max_tokens: int = Field(1024, ge=1)
    """Tokens the teacher may generate per answer."""
    temperature: float = Field(0.6, ge=0)
    """Sampling temperature (DeepSeek recommends 0.5-0.7 for R1)."""
    seed: int | None = None
    """Sent with each request (sample k of prompt i gets seed + 1000·i + k) where the endpoint honours it."""
    concurrency: int = Field(8, ge=1)
    """Requests in flight at once."""
    retries: int = Field(3, ge=0)
    """Retries per request on connection errors, timeouts, 429 and 5xx (the openai client's exponential backoff)."""
    timeout_seconds: float = Field(120.0, gt=0)
    """Per-request timeout."""
