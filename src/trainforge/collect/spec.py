"""The collect stage's declaration (trainforge.stages): files, an HTTP API, a crawl, WARC files → collect/records.jsonl.

It runs before `data` (data declares `after=("collect",)`), and the data stage reads its output as one
more source when this section is in the config. `trainforge data collect` is its verb (registered by
trainforge.data.cli, which delegates to trainforge.collect.cli).
"""

from __future__ import annotations

from trainforge.collect.config import CollectConfig
from trainforge.paths import COLLECT
from trainforge.stages import StageSpec

SPECS = (
    StageSpec(
        name="collect",
        section=CollectConfig,
        description="Fetch raw data (files, an HTTP JSON API, a polite web crawl, WARC files) for the data stage.",
        entry="trainforge.collect.stage:run_collect",
        writes=(COLLECT,),
        report="trainforge.collect.report:collect_section",
    ),
)
