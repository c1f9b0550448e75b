"""The tune: section's declaration (trainforge.stages): read by `trainforge tune`, not a stage of `trainforge run`."""

from __future__ import annotations

from trainforge.stages import SectionSpec
from trainforge.tune.config import TuneConfig

SPECS = (
    SectionSpec(
        name="tune",
        section=TuneConfig,
        description="Hyperparameter search (`trainforge tune`); not a stage of `trainforge run`.",
        cli="trainforge.tune.cli",
    ),
)
