"""The data stage's declaration (trainforge.stages): raw sources in, clean splits out."""

from __future__ import annotations

from trainforge.data.config import DataConfig
from trainforge.paths import COLLECTED, DATA
from trainforge.stages import StageSpec


def _has_a_source(config) -> None:
    if not config.data.sources and getattr(config, "collect", None) is None:
        from trainforge.errors import UserError

        raise UserError("data.sources: give at least one source (or add a collect: section, whose records the data stage reads)")


SPECS = (
    StageSpec(
        name="data",
        section=DataConfig,
        description="Read, clean, dedup and split the data.",
        entry="trainforge.data.stage:run_data",
        writes=(DATA,),
        reads_if_present=(COLLECTED,),
        after=("collect",),  # when the config has collect:, its records are one more source
        report="trainforge.data.report:data_funnel",
        cli="trainforge.data.cli",
        check=_has_a_source,
    ),
)
