"""The declarations (trainforge.stages) of pretrain (a causal LM on raw text) and train (the model for the task)."""

from __future__ import annotations

from trainforge.paths import ADAPTER, MODEL, PRETRAIN, TOKENIZER, TRAIN_SPLIT, VAL_SPLIT
from trainforge.stages import StageSpec
from trainforge.train.config import PretrainConfig, TrainConfig

SPECS = (
    StageSpec(
        name="pretrain",
        section=PretrainConfig,
        description="Pretrain a causal LM on general text, then on the unlabelled in-domain text (ULMFiT steps 1-2).",
        entry="trainforge.train.pretrain:run_pretrain",
        sections=("device",),  # where it runs can change its numbers
        writes=(PRETRAIN,),
        reads_if_present=(TRAIN_SPLIT, VAL_SPLIT),  # the in-domain phase's text, when data: ran
        after=("data",),
        distributed=True,
    ),
    StageSpec(
        name="train",
        section=TrainConfig,
        description="Train the model.",
        entry="trainforge.train.stage:run_train",
        sections=("device",),  # where it runs can change its numbers
        reads=(TRAIN_SPLIT, VAL_SPLIT),
        writes=(TOKENIZER, MODEL, ADAPTER),
        reads_if_present=(PRETRAIN,),
        after=("data", "pretrain"),
        distributed=True,
        report="trainforge.train.report:training",  # pretrain's curves too: one section for both
    ),
)
