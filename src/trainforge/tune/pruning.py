"""Pruning from inside training: the loop's evaluations go to the trial, which may stop the run there.

    fit() ── every eval_every steps ──▶ PruneReport.on_evaluate(step, scores)
                                           trial.report(score, step); trial.should_prune()? ──▶ raise TrialPruned
    the exception leaves fit (its model, optimizer and batches go with its frames), the runner records the
    stage as failed, and the objective turns it into a pruned trial: pruned.json + manifest status "pruned".
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from trainforge.files import write_json_atomic
from trainforge.paths import MANIFEST
from trainforge.tune.config import PrunerConfig

LOWER_IS_BETTER = ("loss", "perplexity", "error")


def make_pruner(p: PrunerConfig):
    import optuna

    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps,
                                           interval_steps=p.interval_steps)
    if p.kind == "percentile":
        return optuna.pruners.PercentilePruner(p.percentile, n_startup_trials=p.startup_trials,
                                               n_warmup_steps=p.warmup_steps, interval_steps=p.interval_steps)
    if p.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1 if p.min_resource == "auto" else p.min_resource,
                                              max_resource=p.max_resource, reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def report_score(p: PrunerConfig, direction: str) -> tuple[str | None, bool]:
    """(score name or None for 'pick from the first report', negate?) — reports follow the study's direction."""
    if p.score is None:
        return None, False
    lower = any(w in p.score for w in LOWER_IS_BETTER)
    return p.score, lower == (direction == "maximize")


class PruneReport:
    """A training-loop callback (train/callbacks.py) that reports each evaluation to an Optuna trial."""

    def __init__(self, trial, pruner: PrunerConfig, direction: str, objectives: int = 1):
        self.trial = trial
        self.reports = objectives == 1  # Optuna keeps no intermediate values for a multi-objective study
        self.direction = direction
        self.score, self.negate = report_score(pruner, direction)
        self.enabled = pruner.kind != "none"
        self.last_step = 0  # of the last evaluation reported
        self.last_value: float | None = None
        self.trained = 0  # optimizer steps so far: what a failed or interrupted trial spent

    def on_step_end(self, step: int, model, optimizer) -> None:
        self.trained = step

    def _pick(self, scores: dict) -> None:
        lower = [k for k in scores if any(w in k for w in LOWER_IS_BETTER)]
        higher = [k for k in scores if k not in lower]
        if self.direction == "maximize" and higher:
            self.score = "val_accuracy" if "val_accuracy" in higher else higher[0]
        else:
            self.score = "val_loss" if "val_loss" in scores else (lower or list(scores))[0]
        self.negate = (self.score in lower) == (self.direction == "maximize")

    def on_evaluate(self, step: int, scores: dict[str, float]) -> None:
        import optuna

        if self.score is None:
            self._pick(scores)
        if self.score not in scores:  # a fit whose scores do not have it (not the trial's training)
            return
        value = -scores[self.score] if self.negate else scores[self.score]
        self.last_step, self.last_value = step, float(scores[self.score])
        if not self.reports:
            return
        self.trial.report(float(value), step)
        if self.enabled and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: {self.score} {self.last_value:.4f}")


def mark_pruned(run_dir: Path, trial_number: int, report: PruneReport, reason: str) -> None:
    """Say in the trial's run directory that it was pruned, and where: pruned.json and the manifest's status."""
    record = {"trial": trial_number, "step": report.last_step, "score": report.score, "value": report.last_value,
              "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json_atomic(run_dir / "pruned.json", record)
    manifest_path = run_dir / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        for rec in manifest.get("stages", {}).values():
            if rec.get("status") == "failed" and "TrialPruned" in str(rec.get("error", "")):
                rec.update(status="pruned", pruned_at_step=report.last_step, error=reason)
        manifest["tune"] = {"state": "pruned", **record}
        write_json_atomic(manifest_path, manifest)
