"""The eval stage's declaration (trainforge.stages): the model scored beside a baseline."""

from __future__ import annotations

from trainforge.evaluate.config import EvalConfig
from trainforge.paths import EVAL, MODEL, TEST_SPLIT, TRAIN_SPLIT, VAL_SPLIT
from trainforge.stages import StageSpec

SPECS = (
    StageSpec(
        name="eval",
        section=EvalConfig,
        description="Score the model beside a baseline.",
        entry="trainforge.evaluate.stage:run_eval",
        sections=("device",),  # where it runs can change its numbers
        reads=(MODEL, TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT),
        writes=(EVAL,),
        after=("train",),
        report="trainforge.evaluate.report:evaluation",
        cli="trainforge.evaluate.cli",
    ),
)
