"""One console for status lines and progress bars (rich), on stderr so stdout stays parseable."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True, highlight=False, soft_wrap=True)


def quiet_libraries() -> None:
    """Our own progress bars and messages speak for every command; silence the libraries' duplicates
    (Hugging Face download/loading bars, transformers' warnings, tokenizers' fork warning)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class RateColumn(ProgressColumn):
    """Items per second, with the unit the caller names (docs/s, steps/s)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        return Text(f"{speed:,.1f} {unit}/s" if speed else f"? {unit}/s", style="progress.data.speed")


class Bar:
    """Handle on one progress bar: `advance(n)` and `note('loss 0.41')`."""

    def __init__(self, progress: Progress, task_id):
        self._progress, self._task = progress, task_id

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._task, n)

    def note(self, text: str) -> None:
        self._progress.update(self._task, note=text)


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "it") -> Iterator[Bar]:
    """A bar with count, rate and ETA; renders only on a terminal, stays quiet in CI logs."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    ]
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total, unit=unit, note="")
        yield Bar(progress, task)
