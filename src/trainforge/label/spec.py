"""The label: section's declaration (trainforge.stages): read by `trainforge label`, not a stage of `trainforge run`."""

from __future__ import annotations

from trainforge.label.config import LabelConfig
from trainforge.stages import SectionSpec

SPECS = (
    SectionSpec(
        name="label",
        section=LabelConfig,
        description="Active learning and the Label Studio round trip (`trainforge label`); not a stage of `trainforge run`.",
        cli="trainforge.label.cli",
    ),
)
