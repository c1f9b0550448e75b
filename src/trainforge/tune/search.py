"""Hyperparameter search with Optuna: every trial is an ordinary run with dotted overrides.

    study (journal file here, PostgreSQL for a team) ─┬─ trial 0: runs/<name>-trial0/  train.lr=…   complete
                                                       ├─ trial 1: runs/<name>-trial1/  train.lr=…   pruned at step 40
                                                       ├─ trial 2: (config invalid: refused, nothing run) failed
                                                       └─ …   runs/<name>-tune/: best.yaml (or pareto/), study.json, report.html

A trial's training reports each validation score to the trial (tune/pruning.py) and stops there when the
pruner says so. A trial that crashes is recorded as failed with its error and the study goes on; Ctrl-C
marks the running trial failed ("interrupted"), writes the outputs so far and exits, and the next
`trainforge tune` on the same storage continues the count. `--workers N` runs N worker processes
(tune/worker.py) on one study; processes (or machines) pointed at the same storage and study share it:
Optuna hands each a different trial number.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trainforge.config import Config, load_config
from trainforge.console import console
from trainforge.errors import StageFailed, UserError
from trainforge.tune.config import TuneConfig
from trainforge.tune.pruning import PruneReport, make_pruner, mark_pruned
from trainforge.tune.space import check_trial_config, grid_space, probe_space, sample_config
from trainforge.tune.storage import default_storage, open_storage


@dataclass
class Search:
    """What every worker of one study agrees on: the base config, the tune section, the storage."""

    config_path: str
    overrides: list[str]
    base: Config
    tcfg: TuneConfig
    base_raw: dict
    storage_url: str
    study_name: str

    @property
    def out(self) -> Path:
        return Path(self.base.runs_dir) / f"{self.base.name}-tune"


def prepare(config_path: str, overrides: list[str], trials: int | None = None, storage: str | None = None,
            workers: int | None = None, sampler: str | None = None) -> Search:
    base = load_config(config_path, overrides)
    if base.tune is None:
        raise UserError(f"{config_path}: no `tune:` section (e.g. tune: {{space: {{train.lr: {{low: 1.0e-4, high: 3.0e-3, log: true}}}}}})")
    changes = {k: v for k, v in {"trials": trials, "storage": storage, "workers": workers, "sampler": sampler}.items() if v is not None}
    try:
        tcfg = TuneConfig.model_validate(base.tune.model_dump() | changes)
    except ValueError as e:
        raise UserError(f"tune: {e}") from None
    base_raw = base.model_dump(mode="json")
    probe_space(tcfg, base_raw, config_path)  # every key, bound and choice validates before anything runs
    for m in tcfg.metrics:
        stage = m.partition(".")[0]
        if getattr(base, stage, None) is None:
            raise UserError(f"tune.metric {m}: the config does not run stage '{stage}'")
    if tcfg.sampler == "grid":
        grid_space(tcfg.space)  # refuses a space it cannot enumerate, naming the key
    url = tcfg.storage or default_storage(base.runs_dir)
    return Search(config_path, list(overrides), base, tcfg, base_raw, url, tcfg.study or base.name)


def make_sampler(tcfg: TuneConfig, seed: int):
    import optuna

    if tcfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tcfg.sampler == "grid":
        return optuna.samplers.GridSampler(grid_space(tcfg.space), seed=seed)
    if tcfg.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401 — Optuna's CmaEsSampler needs it
        except ImportError:
            raise UserError("tune.sampler cmaes needs the cmaes package: pip install 'trainforge[tune]'") from None
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=tcfg.startup_trials, warn_independent_sampling=False,
                                            independent_sampler=optuna.samplers.RandomSampler(seed=seed))
    if tcfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tcfg.startup_trials, multivariate=True,
                                      group=any(d.when for d in tcfg.space.values()))


def load_study(s: Search, worker: int = 0, create: bool = False):
    """The study with this worker's sampler (seed + worker, so workers do not propose the same points)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # multivariate TPE
    storage = open_storage(s.storage_url, s.tcfg.workers)
    seed = s.base.seed if s.tcfg.seed is None else s.tcfg.seed
    sampler, pruner = make_sampler(s.tcfg, seed + worker), make_pruner(s.tcfg.pruner)
    if not create:
        return optuna.load_study(study_name=s.study_name, storage=storage, sampler=sampler, pruner=pruner)
    study = optuna.create_study(study_name=s.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                directions=s.tcfg.directions, load_if_exists=True)
    if [d.name.lower() for d in study.directions] != s.tcfg.directions:
        raise UserError(f"tune.direction: study '{s.study_name}' in {s.storage_url} was made with "
                        f"{[d.name.lower() for d in study.directions]}; use another tune.study for {s.tcfg.directions}")
    if s.tcfg.enqueue and not study.trials:  # a warm start, once: not again when the study resumes
        for params in s.tcfg.enqueue:
            study.enqueue_trial(params)
    return study


# --------------------------------------------------------------------------- one trial


def run_trial_pipeline(cfg: Config, report: PruneReport):
    """Run the trial's pipeline with `report` hooked into training. A pretrain stage, which also calls fit(),
    runs first on its own (then cached), so only the trial's fine-tuning reports to the pruner."""
    from trainforge.run import plan_stages, run_pipeline
    from trainforge.train import callbacks

    names = [st.name for st in plan_stages(cfg)]
    if "pretrain" in names and "train" in names:
        run_pipeline(cfg, only=tuple(names[: names.index("pretrain") + 1]))
    with callbacks.active(report):
        return run_pipeline(cfg)


class Objective:
    """One trial: sample, validate, run, read the metric(s); record why when it does not complete."""

    def __init__(self, s: Search, threads: int | None = None, parent_run: str | None = None):
        self.s, self.threads, self.parent_run = s, threads, parent_run

    def __call__(self, trial):
        import optuna

        s, tcfg = self.s, self.s.tcfg
        raw = sample_config(trial, tcfg.space, s.base_raw)
        raw["name"] = f"{s.base.name}-trial{trial.number}"
        if self.threads:  # N workers × threads ≤ cores
            for section in ("pretrain", "train"):
                if isinstance(raw.get(section), dict) and not 0 < (raw[section].get("threads") or 0) <= self.threads:
                    raw[section]["threads"] = self.threads
        console.print(f"[bold magenta]trial {trial.number}[/] " + "  ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()))
        try:
            cfg = check_trial_config(raw, source=f"{s.config_path} (trial {trial.number})")
        except UserError as e:
            trial.set_user_attr("error", str(e))
            raise
        trial.set_user_attr("run_dir", str(cfg.run_dir))
        report = PruneReport(trial, tcfg.pruner, tcfg.directions[0], len(tcfg.metrics))
        pruned, state = None, "FAIL"
        try:
            result = run_trial_pipeline(cfg, report)
            state = "COMPLETE"
        except StageFailed as e:
            if not isinstance(e.cause, optuna.TrialPruned):
                trial.set_user_attr("error", str(e)[:2000])
                trial.set_user_attr("steps", report.trained)
                raise
            pruned, state = str(e.cause), "PRUNED"  # leave the except block: the traceback (and the model) goes
        except KeyboardInterrupt:
            trial.set_user_attr("error", f"interrupted (Ctrl-C) at step {report.trained}")
            trial.set_user_attr("steps", report.trained)
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
            trial.set_user_attr("steps", report.trained)
            raise
        finally:
            if state != "COMPLETE":  # a complete trial is tagged once its metric is read
                self._track(cfg, trial, state)
        if pruned is not None:
            self._pruned(cfg, trial, report, pruned)
            raise optuna.TrialPruned(pruned)
        values = []
        for m in tcfg.metrics:
            stage, _, name = m.partition(".")
            value = result.metrics.get(stage, {}).get(name)
            if value is None or not math.isfinite(float(value)):
                reported = ", ".join(result.metrics.get(stage, {}))
                message = f"tune.metric {m}: stage '{stage}' reported no finite '{name}' (it reported: {reported})"
                trial.set_user_attr("error", message)
                self._track(cfg, trial, "FAIL")
                raise UserError(message)
            values.append(float(value))
        trial.set_user_attr("steps", result.metrics.get("train", {}).get("steps", report.trained))
        self._track(cfg, trial, "COMPLETE")
        return values[0] if len(values) == 1 else values

    def _pruned(self, cfg: Config, trial, report: PruneReport, reason: str) -> None:
        from trainforge.report.html import write_report

        mark_pruned(cfg.run_dir, trial.number, report, reason)
        write_report(cfg.run_dir)  # the page shows the manifest's "pruned"
        trial.set_user_attr("pruned_at_step", report.last_step)
        trial.set_user_attr("steps", report.last_step)
        console.print(f"[yellow]trial {trial.number} pruned[/] at step {report.last_step} ({report.score} {report.last_value:.4f})")

    def _track(self, cfg: Config, trial, state: str) -> None:
        from trainforge.tune.tracking import tag_trial

        try:
            tag_trial(cfg, self.parent_run, cfg.run_dir, self.s.study_name, trial.number, state, trial.params)
        except Exception as e:  # noqa: BLE001 — tracking must not cost the trial
            console.print(f"[yellow]trial {trial.number}: MLflow tagging failed: {e}[/]")


def run_trials(s: Search, n: int, worker: int = 0, threads: int | None = None, parent_run: str | None = None) -> None:
    """This process's share of the study: n trials; failures are recorded and the next trial starts."""
    study = load_study(s, worker)
    study.optimize(Objective(s, threads, parent_run), n_trials=n, catch=(Exception,), gc_after_trial=True)


# --------------------------------------------------------------------------- the study


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def tune(config_path: str, overrides: list[str], trials: int | None = None, storage: str | None = None,
         workers: int | None = None, sampler: str | None = None) -> dict:
    """Run the study; returns the summary written to runs/<name>-tune/study.json (plus "interrupted")."""
    from trainforge.tune.outputs import write_outputs
    from trainforge.tune.tracking import close_parent, open_parent

    s = prepare(config_path, overrides, trials, storage, workers, sampler)
    study = load_study(s, create=True)
    parent = open_parent(s.base, s.study_name)
    interrupted = False
    try:
        if s.tcfg.workers == 1:
            run_trials(s, s.tcfg.trials, parent_run=parent)
        else:
            run_workers(s, parent)
    except KeyboardInterrupt:
        interrupted = True
        console.print("\n[yellow]interrupted[/]: the running trial is recorded as failed; "
                      "the same `trainforge tune` command continues the study")
    study = load_study(s)
    summary = write_outputs(s, study)
    summary["interrupted"] = interrupted
    if s.tcfg.wandb:
        from trainforge.tune.tracking import wandb_trials

        wandb_trials(s.out, s.study_name, summary["trials"], s.tcfg.metrics)
    close_parent(s.base, parent, s.out, summary, interrupted)
    return summary


def run_workers(s: Search, parent: str | None) -> None:
    """N worker processes on one study, each with cores // N torch threads and its share of the trials."""
    n = s.tcfg.workers
    threads = max(1, cores() // n)
    if n > cores():
        console.print(f"[yellow]tune.workers {n} > {cores()} cores: each trial gets 1 thread and they share cores[/]")
    shares = [s.tcfg.trials // n + (i < s.tcfg.trials % n) for i in range(n)]
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = []
    for i, share in enumerate(shares):
        if share == 0:
            continue
        cmd = [sys.executable, "-m", "trainforge.tune.worker", s.config_path, *s.overrides, "--worker", str(i),
               "--trials", str(share), "--threads", str(threads), "--storage", s.storage_url, "--study", s.study_name,
               "--sampler", s.tcfg.sampler, *(["--parent-run", parent] if parent else [])]
        procs.append(subprocess.Popen(cmd, env=env))
    console.print(f"[bold]{len(procs)} workers[/] × {threads} threads on study '{s.study_name}' ({s.storage_url})")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches the workers too: give them time to record their trial before a second
        # SIGINT could interrupt that; an interrupt of this process alone is passed on after the wait.
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    if any(c == 130 for c in codes):
        raise KeyboardInterrupt
    bad = [c for c in codes if c not in (0, 130)]
    if bad:
        raise UserError(f"tune: {len(bad)} worker(s) exited with {bad}; their trials are in the study, see the log above")
