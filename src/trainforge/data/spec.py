"""The data stage's declaration (trainforge.stages): raw sources in, clean splits out."""

from __future__ import annotations

from trainforge.data.config import DataConfig
from trainforge.paths import DATA
from trainforge.stages import StageSpec

SPECS = (
    StageSpec(
        name="data",
        section=DataConfig,
        description="Read, clean, dedup and split the data.",
        entry="trainforge.data.stage:run_data",
        writes=(DATA,),
        report="trainforge.data.report:data_funnel",
        cli="trainforge.data.cli",
    ),
)
