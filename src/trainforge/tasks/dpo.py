"""Preference-tuned causal LM (train.task: dpo): trained by the DPO recipe (posttrain/dpo_loop.py), served and
evaluated as the SFT model it started from.

The recipe's loop is its own; what the Task protocol asks of a supervised loop (encode, batch, loss, validate) is the
SFT task's, used for the optional SFT phase before DPO (train.dpo.sft_epochs). The prompt framing is SFT's too
(its PromptFormat, saved in model/trainforge.json), so eval and serve ask the DPO model exactly as training did.

evaluate: the SFT model's language-model and answer metrics (evaluate/lm.py), and the headline of a preference
run — label-answer accuracy (the greedy answer is the correct label's) of the DPO model beside its SFT reference
(model/reference/) and beside always answering the most common training label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from trainforge.batching import Encoded
from trainforge.tasks.base import EvalJob, ModelSpec
from trainforge.tasks.info import ModelInfo, PromptFormat
from trainforge.tasks.sft import SFTTask

REFERENCE_DIR = "reference"
"""model/reference/: the SFT model DPO started from (its reference), kept for eval's side-by-side."""


@dataclass
class DPOTask:
    fmt: PromptFormat = field(default_factory=PromptFormat)
    max_length: int = 128
    sample_count: int = 32

    name: ClassVar[str] = "dpo"
    peft_task_type: ClassVar[str] = "CAUSAL_LM"
    serves_as: ClassVar[str] = "generator"
    token_level: ClassVar[bool] = True
    selection: ClassVar[tuple[str, bool]] = ("val_loss", False)
    compressible: ClassVar[bool] = False

    @property
    def sft(self) -> SFTTask:
        """The supervised task of the SFT phase (and of everything but the preference loss)."""
        return SFTTask(self.fmt, self.max_length, self.sample_count)

    @classmethod
    def from_config(cls, cfg) -> "DPOTask":
        return cls(SFTTask.from_config(cfg).fmt, cfg.max_length, cfg.sft.generate_examples)

    @classmethod
    def from_info(cls, info: ModelInfo) -> "DPOTask":
        return cls(info.prompt_format or PromptFormat(), info.max_length or 512)

    def prepare_tokenizer(self, tokenizer) -> None:
        self.sft.prepare_tokenizer(tokenizer)

    def encode(self, rows: list[dict], tokenizer, held_out: bool = False) -> Encoded:
        return self.sft.encode(rows, tokenizer, held_out)

    def batch(self, enc: Encoded, idx: list[int], pad_id: int) -> dict:
        return self.sft.batch(enc, idx, pad_id)

    def predicted_tokens(self, enc: Encoded) -> list[int]:
        return self.sft.predicted_tokens(enc)

    def loss(self, net, batch: dict, weights):
        return self.sft.loss(net, batch, weights)

    def validate(self, model, val: Encoded, pad_id: int, batch_size: int = 64) -> dict[str, float]:
        return self.sft.validate(model, val, pad_id, batch_size)

    def build_model(self, spec: ModelSpec, tokenizer):
        return self.sft.build_model(spec, tokenizer)

    def load_model(self, model_dir: Path, **kwargs):
        return self.sft.load_model(model_dir, **kwargs)

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> ModelInfo:
        from trainforge.tasks.info import architecture_of

        return ModelInfo(self.name, *architecture_of(model), max_length=spec.max_length, prompt_format=self.fmt,
                         method=method, adapter=adapter)

    def samples(self, model, tokenizer, val_rows: list[dict]) -> list[dict]:
        return self.sft.samples(model, tokenizer, val_rows)

    def write_samples(self, samples: list[dict], model_dir: Path) -> dict:
        return self.sft.write_samples(samples, model_dir)

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        from trainforge.posttrain.preference_eval import evaluate_preference

        return evaluate_preference(job, self.fmt, reference_of(Path(job.model_dir)))


def reference_of(model_dir: Path) -> Path:
    """The SFT model a DPO model started from: model/reference/, or the directory trainer_state.json names."""
    import json

    kept = model_dir / REFERENCE_DIR
    state = model_dir / "trainer_state.json"
    if not kept.is_dir() and state.is_file():
        named = json.loads(state.read_text()).get("reference_model")
        if named and Path(named).is_dir():
            return Path(named)
    return kept
