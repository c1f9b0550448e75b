"""The shape every kind of model shares: a `Task` (a Protocol, not a base class — torchtune's rule).

One Task object per run owns, for its kind of model, everything that differs between kinds:

    records ──encode──▶ Encoded ──batch──▶ tensors ──loss──▶ the loop (train/loop.py)
                                              └─validate─▶ the metric that picks the best checkpoint
    build_model / load_model, and the processor (a tokenizer today; image processors and
    feature extractors are the next tasks' processors)
    evaluate ──▶ eval/metrics.json beside its baseline (eval stage)

The loop, the stages and the server never ask "is this a classifier?": they call the task. A new
kind of model (image classification, DPO, GRPO) is a new module here and one entry in TASKS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import torch

    from trainforge.batching import Encoded
    from trainforge.tasks.info import ModelInfo


@dataclass
class ModelSpec:
    """What to build: a preset name, a local model directory, `pretrain` (this run's pretrain/) or a hub id."""

    model: str
    max_length: int
    """Positions the model must hold (train.max_length, pretrain.seq_len)."""
    dropout: float = 0.0
    run_dir: Path | None = None
    pooling: str = "last"
    """Classification heads: last (the last real token / [CLS]) or concat (models/pooling.py)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Preset config fields to change (pretrain.config_overrides)."""
    overrides_key: str = "config_overrides"
    """The config key the overrides came from, for error messages."""


@dataclass
class EvalJob:
    """What the eval stage hands a task: the model, the split to score, the train split for the baseline."""

    model_dir: Path
    info: "ModelInfo"
    rows: list[dict]
    train_rows: list[dict]
    cfg: Any
    """The eval: section (evaluate/config.py EvalConfig)."""
    seed: int
    out: Path
    """eval/."""
    split_file: Path
    device: Any = None
    """The torch.device the model is scored on (the run's `device:`, resolved once by the eval stage); None: the CPU."""


class Task(Protocol):
    name: ClassVar[str]
    """The key in TASKS and in model/trainforge.json."""
    peft_task_type: ClassVar[str]
    """peft's TaskType name for LoRA / prompt / prefix tuning (SEQ_CLS, CAUSAL_LM)."""
    serves_as: ClassVar[str]
    """What the server runs it as: classifier (labels + probabilities) or generator (tokens)."""
    token_level: ClassVar[bool]
    """The loss is summed over target tokens and divided by the global batch's count (train/loop.py Weights);
    the memory estimate then counts the vocabulary logits."""
    selection: ClassVar[tuple[str, bool]]
    """(validation metric that picks the best checkpoint, higher is better)."""
    compressible: ClassVar[bool]
    """The compress stage can build and gate variants of it."""

    def prepare_tokenizer(self, tokenizer) -> None:
        """Anything the task adds to the processor before encoding (SFT: its chat template)."""
        ...

    def encode(self, rows: list[dict], tokenizer, held_out: bool = False) -> "Encoded":
        """Records → examples. held_out: validation/test rows, checked against what training saw."""
        ...

    def batch(self, enc: "Encoded", idx: list[int], pad_id: int) -> dict[str, "torch.Tensor"]: ...

    def predicted_tokens(self, enc: "Encoded") -> list[int]:
        """Per example, the tokens a next-token loss predicts (the Weights.tokens count)."""
        ...

    def loss(self, net: "torch.nn.Module", batch: dict, weights) -> "torch.Tensor":
        """This micro-batch's share of the global batch's loss (weights: train/loop.py Weights)."""
        ...

    def validate(self, model: "torch.nn.Module", val: "Encoded", pad_id: int, batch_size: int = 64) -> dict[str, float]: ...

    def build_model(self, spec: ModelSpec, tokenizer) -> "torch.nn.Module": ...

    def load_model(self, model_dir: Path, **kwargs) -> "torch.nn.Module": ...

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> "ModelInfo": ...

    def samples(self, model, tokenizer, val_rows: list[dict]) -> list[dict]:
        """Example outputs to keep beside the trained model (SFT: greedy answers); [] when the task has none."""
        ...

    def write_samples(self, samples: list[dict], model_dir: Path) -> dict[str, float]:
        """Write `samples` into model_dir; return the metrics they give (SFT: generate_exact_match)."""
        ...

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        """Write eval/metrics.json (model beside baseline) and the task's analysis; return flat metrics."""
        ...
