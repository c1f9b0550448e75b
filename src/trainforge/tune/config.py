"""Config of hyperparameter search: which keys to vary, over what, toward which metric(s), pruned how."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from trainforge.section import Section

Direction = Literal["maximize", "minimize"]


class SearchDim(Section):
    """One dimension: a float/int range (`low`, `high`, optional `log`/`step`) or a list of `choices`."""

    low: float | None = None
    """Lower bound of a range."""
    high: float | None = None
    """Upper bound of a range."""
    log: bool = False
    """Sample the range on a log scale (learning rates, weight decay)."""
    int: bool = False
    """Sample whole numbers from the range (layers, batch sizes)."""
    step: float | None = Field(None, gt=0)
    """Spacing of a range's values (not with log); the grid sampler needs it for a float range."""
    choices: list | None = None
    """A categorical dimension: pick one of these values."""
    when: dict[str, Any] | None = None
    """Sample this key only when these keys have these values (a list: any of them), e.g. `{train.method: lora}`;
    otherwise the trial keeps the config's value and the key is not a parameter of the trial."""

    @model_validator(mode="after")
    def _range_or_choices(self) -> "SearchDim":
        has_range = self.low is not None and self.high is not None
        if has_range == (self.choices is not None):
            raise ValueError("give either low+high or choices")
        if has_range and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and has_range and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("a range takes log or step, not both")
        if self.choices is not None and not self.choices:
            raise ValueError("choices is empty")
        return self

    def matches(self, values: dict[str, Any]) -> bool:
        """Whether the `when` condition holds for these (dotted key → value) settings."""
        for key, want in (self.when or {}).items():
            allowed = want if isinstance(want, list) else [want]
            if values.get(key) not in allowed:
                return False
        return True


class PrunerConfig(Section):
    """Stop a trial whose validation metric, reported at each evaluation of the training loop, is behind."""

    kind: Literal["none", "median", "percentile", "hyperband"] = "none"
    """median: stop below the median of earlier trials at the same step; percentile: below `percentile`;
    hyperband: successive halving over budgets from `min_resource` steps (saves most on many trials)."""
    startup_trials: int = Field(5, ge=0)
    """median/percentile: trials that always run to the end first, so there is something to compare with."""
    warmup_steps: int = Field(0, ge=0)
    """median/percentile: never prune before this training step (early curves cross)."""
    interval_steps: int = Field(1, ge=1)
    """median/percentile: check at every Nth report only."""
    percentile: float = Field(25.0, gt=0, lt=100)
    """percentile: keep a trial in the top this-many percent (25 keeps the best quarter); median is 50."""
    min_resource: int | Literal["auto"] = "auto"
    """hyperband: steps every trial gets before the first cut."""
    max_resource: int | Literal["auto"] = "auto"
    """hyperband: steps of a trial that is never cut; auto: the longest trial seen."""
    reduction_factor: int = Field(3, ge=2)
    """hyperband: 1/this of the trials go on at each rung."""
    score: str | None = None
    """The validation score the loop reports (`val_accuracy`, `val_loss`, …); null: the accuracy-like one when the
    study maximises, the loss when it minimises. A loss under a maximised metric is reported negated."""


class TuneConfig(Section):
    """Optuna search over any config key; each trial is a full run in runs/<name>-trial<N>/."""

    space: dict[str, SearchDim]
    """Dotted config keys → search dimension, e.g. `train.lr: {low: 1e-4, high: 3e-3, log: true}`."""
    metric: str | list[str] = "eval.model_accuracy"
    """`stage.metric` from a trial's run, as the manifest and MLflow name it; a list of two or more is a
    multi-objective study (e.g. `[eval.model_accuracy, compress.int8_dynamic_p50_b1_ms]`) whose result is the Pareto front."""
    direction: Direction | list[Direction] = "maximize"
    """Whether a higher metric is better; one per metric for a multi-objective study."""
    trials: int = Field(20, ge=1)
    """Trials this command runs, over all its workers (other machines sharing the storage add theirs)."""
    sampler: Literal["tpe", "random", "grid", "cmaes", "nsga2"] = "tpe"
    """tpe: model-based, good past ~10 trials (also multi-objective); random: a baseline and for tiny budgets;
    grid: every combination (choices, int ranges, float ranges with a step); cmaes: CMA-ES for continuous spaces
    (categorical keys fall back to random); nsga2: genetic, for multi-objective studies. All seeded by `seed`."""
    startup_trials: int = Field(10, ge=0)
    """tpe/cmaes: trials sampled at random before the model takes over (Optuna's default 10; fewer for small budgets)."""
    seed: int | None = None
    """Seed of the sampler; null uses the config's `seed` (which also seeds every trial's training)."""
    pruner: PrunerConfig = PrunerConfig()
    """Early stopping of trials that are behind (single-objective studies)."""
    workers: int = Field(1, ge=1)
    """Trials run at once on this machine, each in its own process with cores // workers torch threads."""
    storage: str | None = None
    """Optuna storage: null → the journal file <runs_dir>/optuna.journal (safe for several processes); a path
    ending in .journal; or an RDB URL (sqlite:///…, postgresql://…) that lets many machines share a study."""
    study: str | None = None
    """Study name; null uses the run name. Workers with the same storage and study cooperate."""
    enqueue: list[dict[str, Any]] = []
    """Settings to try first, in order ({dotted key: value}, e.g. the current config's): a warm start for the sampler."""
    wandb: bool = False
    """Also log each trial to Weights & Biases in offline mode (runs/<name>-tune/wandb/; `wandb sync` uploads)."""

    @model_validator(mode="after")
    def _objectives(self) -> "TuneConfig":
        metrics = self.metrics
        directions = self.directions
        if len(directions) != len(metrics):
            raise ValueError(f"direction: give one per metric ({len(metrics)} metrics, {len(directions)} directions)")
        if len(metrics) > 1 and self.pruner.kind != "none":
            raise ValueError("pruner: Optuna prunes single-objective studies only; set pruner.kind: none")
        if len(metrics) > 1 and self.sampler in ("grid", "cmaes"):
            raise ValueError(f"sampler {self.sampler} is single-objective; use nsga2, tpe or random for several metrics")
        return self

    @property
    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def directions(self) -> list[str]:
        return [self.direction] if isinstance(self.direction, str) else list(self.direction)
