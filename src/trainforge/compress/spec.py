"""The compress stage's declaration (trainforge.stages): variants of model/, measured and gated."""

from __future__ import annotations

from trainforge.compress.config import CompressConfig
from trainforge.errors import UserError
from trainforge.paths import COMPRESS, MODEL, TEST_SPLIT, TRAIN_SPLIT, VAL_SPLIT
from trainforge.stages import StageSpec


def needs_a_classifier(config) -> None:
    """Every variant is measured on labelled splits with a classifier's metrics, so a run that trains
    anything else would fail at compress only after training; say so when the config is loaded."""
    if config.train is not None and config.train.task not in ("classification", "image_classification"):
        raise UserError(f"compress: compresses sequence classifiers; train.task is '{config.train.task}' — "
                        f"remove the compress: section (or set train.task: classification)")  # image classifiers: vision/compress.py


SPECS = (
    StageSpec(
        name="compress",
        section=CompressConfig,
        description="Quantise, prune or distil model/, measure each variant beside it and gate it.",
        entry="trainforge.compress.stage:run_compress",
        sections=("device",),  # where it runs can change its numbers
        reads=(MODEL, TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT),
        writes=(COMPRESS,),
        after=("train",),
        report="trainforge.compress.report:compression",
        cli="trainforge.compress.cli",
        check=needs_a_classifier,
    ),
)
