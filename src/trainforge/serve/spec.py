"""Declarations (trainforge.stages) of the register stage and of the serve: section it shares with `trainforge serve`."""

from __future__ import annotations

from trainforge.paths import COMPRESS_CANDIDATE, MODEL, REGISTER, TRAIN_SPLIT
from trainforge.serve.config import RegisterConfig, ServeConfig
from trainforge.stages import SectionSpec, StageSpec

SPECS = (
    StageSpec(
        name="register",
        section=RegisterConfig,
        description="Register the model (or compress/'s candidate) in the MLflow registry under an alias.",
        entry="trainforge.serve.stage:run_register",
        reads=(MODEL, TRAIN_SPLIT),
        writes=(REGISTER,),
        reads_if_present=(COMPRESS_CANDIDATE,),  # names the variant registered instead of model/
        after=("train", "compress"),
        sections=("serve", "tracking"),  # serve.drift shapes the drift profile; tracking.uri is where it is registered
        report="trainforge.serve.report:registration",
    ),
    SectionSpec(
        name="serve",
        section=ServeConfig,
        description="`trainforge serve`: API limits, batching, drift, canary gates; not a stage of `trainforge run`.",
        report="trainforge.serve.monitor:drift_section",
        cli="trainforge.serve.cli",
    ),
)
