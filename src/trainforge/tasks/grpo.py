"""GRPO: a causal LM trained with verifiable rewards (posttrain/grpo_loop.py); served and loaded like an SFT model.

The train stage hands train.task=grpo to its own recipe (posttrain/grpo_stage.py): there is no per-example
loss for the supervised loop, so encode/batch/loss/validate are the SFT task's, used by the optional SFT phase
before GRPO. What this object adds is the eval: exact match and pass@k on held-out prompts beside the SFT model
and a majority-answer baseline (posttrain/grpo_eval.py), reading model/grpo.json (the rewards and sampling the
run used) written beside model/trainforge.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from trainforge.errors import UserError
from trainforge.tasks.base import EvalJob, ModelSpec
from trainforge.tasks.info import ModelInfo, PromptFormat
from trainforge.tasks.sft import SFTTask

GRPO_FILE = "grpo.json"


@dataclass
class GRPOTask(SFTTask):
    name: ClassVar[str] = "grpo"

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> ModelInfo:
        from trainforge.tasks.info import architecture_of

        return ModelInfo(self.name, *architecture_of(model), max_length=spec.max_length, prompt_format=self.fmt,
                         method=method, adapter=adapter)

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        from trainforge.posttrain.grpo_eval import evaluate_grpo

        meta_path = Path(job.model_dir) / GRPO_FILE
        if not meta_path.is_file():
            raise UserError(f"{meta_path}: missing (written by train.task=grpo); re-run the train stage")
        return evaluate_grpo(job, json.loads(meta_path.read_text(encoding="utf-8")))

    @classmethod
    def from_info(cls, info: ModelInfo) -> "GRPOTask":
        return cls(info.prompt_format or PromptFormat(), info.max_length or 512)
