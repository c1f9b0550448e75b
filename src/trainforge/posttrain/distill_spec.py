"""The distill: section's declaration (trainforge.stages): read by `trainforge distill-traces`, not a stage of `trainforge run`."""

from __future__ import annotations

from trainforge.posttrain.distill_config import DistillConfig
from trainforge.stages import SectionSpec

SPECS = (
    SectionSpec(
        name="distill",
        section=DistillConfig,
        description="R1-style distillation: a teacher's verified reasoning traces as SFT records (`trainforge distill-traces`).",
        cli="trainforge.posttrain.distill_cli",
    ),
)
