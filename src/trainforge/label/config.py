"""Config of `trainforge label`: which pool records to send for labelling, and the Label Studio project's names."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainforge.section import Section


class LabelConfig(Section):
    """Active learning and the Label Studio round trip (`trainforge label queue | import`); not a stage of `trainforge run`."""

    strategy: Literal["least_confidence", "margin", "entropy", "kcenter", "random"] = "entropy"
    """How pool records are ranked: least_confidence (1 - max p), margin (smallest p1 - p2), entropy (of p),
    kcenter (k-center greedy on the model's embeddings: covers the pool, not only its uncertain corner), random."""
    batch_size: int = Field(100, ge=1)
    """Records queued per round (one `trainforge label queue`)."""
    budget: int | None = Field(None, ge=1)
    """Total labels to spend over all rounds; a round queues min(batch_size, budget - already labelled). null: no cap."""
    from_name: str = "sentiment"
    """Name of the <Choices> control in the labelling config; a prediction's result.from_name must match it."""
    to_name: str = "text"
    """Name of the <Text> object the choices label; a prediction's result.to_name must match it."""
    text_key: str = "text"
    """Key of the text in each task's `data` (the <Text value="$text"> variable)."""
    min_agreement: float = Field(0.5, gt=0, le=1)
    """Import: a task's majority label must carry more than this share of its annotations (0.5: a strict majority)."""
