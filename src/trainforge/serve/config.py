"""Config of serving, drift monitoring, canary rollout and the `register` stage."""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field

# `register:` is the section's name in every config; pydantic notes that it shadows ABCMeta.register,
# which only exists on the class (cfg.register on an instance is the field), so the note is noise.
warnings.filterwarnings("ignore", message='Field name "register" in "Config" shadows')

from trainforge.section import Section


class LimitsConfig(Section):
    """What one request may ask for; anything beyond gets a 400, never a 500."""

    max_body_bytes: int = Field(1_048_576, gt=0)
    """Largest accepted request body in bytes (413 above it)."""
    max_prompt_tokens: int = Field(2048, gt=0)
    """Longest prompt in tokens; longer prompts are rejected, not truncated."""
    max_tokens: int = Field(512, gt=0)
    """Largest `max_tokens` a client may ask for."""
    max_inputs: int = Field(64, gt=0)
    """Most texts in one /v1/classify request."""


class BatchingConfig(Section):
    """Dynamic batching: concurrent requests share forward passes."""

    max_batch_size: int = Field(32, gt=0)
    """Most requests decoded together; bigger: more throughput, more memory."""
    max_wait_ms: float = Field(5.0, ge=0)
    """How long the first request of a batch waits for company; higher: fuller batches, more latency."""
    torch_threads: int = Field(0, ge=0)
    """torch intra-op threads for the model; 0 keeps torch's default."""


class DriftConfig(Section):
    """Live inputs compared with the training data's reference profile."""

    enabled: bool = True
    """Track drift of live inputs (exported as trainforge:drift_* gauges)."""
    window: int = Field(500, gt=0)
    """Sliding window of the most recent live inputs compared with the reference."""
    min_samples: int = Field(100, gt=0)
    """No verdict before this many live inputs (small samples are noisy)."""
    length_bins: int = Field(10, ge=2)
    """Text-length histogram bins (quantiles of the reference lengths)."""
    top_chars: int = Field(200, ge=10)
    """Most frequent reference characters tracked one by one; the rest share an 'other' bucket."""
    top_tokens: int = Field(500, ge=10)
    """Most frequent reference token ids tracked one by one (the model tokenizer's view); the rest share 'other'."""
    clusters: int = Field(8, ge=2)
    """k of the k-means over hashed character n-gram embeddings."""
    smoothing: float = Field(0.5, gt=0)
    """Additive (Laplace) pseudo-count per bin, so empty bins never give infinite KL."""
    psi_threshold: float = Field(0.2, gt=0)
    """PSI above this flags drift (0.1 slight, 0.2 significant is the usual reading)."""
    kl_threshold: float = Field(0.1, gt=0)
    """Smoothed KL(live || reference) above this flags drift."""
    reference_size: int = Field(1000, gt=0)
    """Training texts sampled for the reference profile."""
    check_every: int = Field(50, gt=0)
    """Recompute the drift scores after this many new inputs."""


class GatesConfig(Section):
    """Live signals the challenger must keep; the first one it breaks rolls it back."""

    min_requests: int = Field(50, gt=0)
    """Challenger requests needed before the latency/error gates judge it."""
    max_error_rate: float = Field(0.05, ge=0, le=1)
    """Largest share of challenger requests that may fail."""
    p99_latency_ms: float = Field(2000.0, gt=0)
    """Latency objective: the challenger's p99 end-to-end latency must stay under it."""
    min_feedback: int = Field(20, gt=0)
    """Labelled outcomes (/v1/feedback) needed before the accuracy gate judges."""
    max_accuracy_drop: float = Field(0.05, ge=0, le=1)
    """Challenger feedback accuracy may trail the champion's by at most this."""
    fail_on_drift: bool = False
    """Roll back when the challenger's predicted-label distribution drifts from the reference."""


class CanaryConfig(Section):
    """Champion/challenger rollout when serving `models:/NAME`."""

    share: float = Field(0.1, ge=0, le=1)
    """Share of traffic sent to the challenger alias."""
    poll_seconds: float = Field(5.0, gt=0)
    """How often the server re-reads the registry aliases (hot-swap on a change)."""
    gates: GatesConfig = GatesConfig()
    """Automatic rollback gates."""


class ServeConfig(Section):
    """`trainforge serve`: OpenAI-compatible API, /metrics, drift, canary."""

    host: str = "127.0.0.1"
    """Bind address; any non-loopback address requires an API key."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port."""
    api_key_env: str = "TRAINFORGE_API_KEY"
    """Environment variable holding the bearer token clients must send."""
    model_name: str | None = None
    """Name the API shows in /v1/models; null: the run or registered-model name."""
    device: str | None = None
    """Where the model runs: auto, cpu, cuda, cuda:N or mps; null: the config's top-level `device:` (auto without one)."""
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Weights and activations: auto is bf16 on a GPU that has it, else fp32 (bf16 halves memory, ~3 digits of precision)."""
    limits: LimitsConfig = LimitsConfig()
    """Per-request limits."""
    batching: BatchingConfig = BatchingConfig()
    """Dynamic batching."""
    drift: DriftConfig = DriftConfig()
    """Drift monitoring."""
    canary: CanaryConfig = CanaryConfig()
    """Champion/challenger rollout."""
    drain_seconds: float = Field(30.0, ge=0)
    """On shutdown, how long in-flight requests may take to finish."""


class RegisterConfig(Section):
    """Register the run's model (or compress/'s passing candidate) in the MLflow model registry."""

    name: str
    """Registered model name, e.g. reviews-sentiment."""
    alias: str = "auto"
    """Alias the new version gets; auto: champion for the first version, challenger after (then
    `trainforge deploy promote` moves it up once its canary holds)."""
    drift_profile: bool = True
    """Write register/drift_profile.json (the reference that serving compares live inputs with)."""
