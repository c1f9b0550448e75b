"""Config of hyperparameter search: which keys to vary, over what, toward which metric."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from trainforge.section import Section


class SearchDim(Section):
    """One dimension: a float/int range (`low`, `high`, optional `log`) or a list of `choices`."""

    low: float | None = None
    """Lower bound of a range."""
    high: float | None = None
    """Upper bound of a range."""
    log: bool = False
    """Sample the range on a log scale (learning rates, weight decay)."""
    int: bool = False
    """Sample whole numbers from the range (layers, batch sizes)."""
    choices: list | None = None
    """A categorical dimension: pick one of these values."""

    @model_validator(mode="after")
    def _range_or_choices(self) -> "SearchDim":
        has_range = self.low is not None and self.high is not None
        if has_range == (self.choices is not None):
            raise ValueError("give either low+high or choices")
        if has_range and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and has_range and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class TuneConfig(Section):
    """Optuna search over any config key; each trial is a full run in runs/<name>-trial<N>/."""

    space: dict[str, SearchDim]
    """Dotted config keys → search dimension, e.g. `train.lr: {low: 1e-4, high: 3e-3, log: true}`."""
    metric: str = "eval.model_accuracy"
    """`stage.metric` from a trial's run, as the manifest and MLflow name it."""
    direction: Literal["maximize", "minimize"] = "maximize"
    """Whether a higher metric is better."""
    trials: int = 20
    """Trials this process runs (workers sharing a storage add theirs)."""
    sampler: Literal["tpe", "random"] = "tpe"
    """tpe: model-based, good past ~10 trials; random: a baseline and for tiny budgets."""
    storage: str | None = None
    """Optuna storage URL; null → sqlite:///<runs_dir>/optuna.db. A PostgreSQL URL lets many machines share a study."""
    study: str | None = None
    """Study name; null uses the run name. Workers with the same storage and study cooperate."""
