"""Hyperparameter search with Optuna: every trial is an ordinary run with dotted overrides.

    study (storage: SQLite here, PostgreSQL for a team) ─┬─ trial 0: runs/<name>-trial0/  train.lr=…
                                                         ├─ trial 1: runs/<name>-trial1/  train.lr=…
                                                         └─ …  best trial's overrides → runs/<name>-tune/best.yaml

Several processes (or machines) pointed at the same storage and study name share the work:
Optuna hands each a different trial.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from trainforge.config import Config, load_config, set_dotted, validate_config
from trainforge.console import console
from trainforge.errors import UserError
from trainforge.tune.config import SearchDim, TuneConfig


def suggest(trial, key: str, dim: SearchDim):
    if dim.choices is not None:
        return trial.suggest_categorical(key, dim.choices)
    if dim.int:
        return trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(key, dim.low, dim.high, log=dim.log)


def storage_url(cfg: Config, tune: TuneConfig) -> str:
    if tune.storage:
        return tune.storage
    db = Path(cfg.runs_dir).resolve() / "optuna.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def tune(config_path: str, overrides: list[str], trials: int | None = None, storage: str | None = None) -> dict:
    """Run the study; returns {"best_value", "best_params", "best_run", "trials"}."""
    import optuna

    base = load_config(config_path, overrides)
    if base.tune is None:
        raise UserError(f"{config_path}: no `tune:` section (e.g. tune: {{space: {{train.lr: {{low: 1.0e-4, high: 3.0e-3, log: true}}}}}})")
    tcfg = base.tune.model_copy(deep=True)
    if trials is not None:
        tcfg.trials = trials
    if storage is not None:
        tcfg.storage = storage
    base_raw = base.model_dump(mode="json")
    for key in tcfg.space:  # every searched key must exist in the config schema
        probe = json.loads(json.dumps(base_raw))
        set_dotted(probe, key, _probe_value(tcfg.space[key]), f"tune.space.{key}")
        validate_config(probe, source=f"{config_path} (tune.space.{key})")
    stage, _, metric = tcfg.metric.partition(".")
    if getattr(base, stage, None) is None:
        raise UserError(f"tune.metric {tcfg.metric}: the config does not run stage '{stage}'")

    from trainforge.run import run_pipeline

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=base.seed) if tcfg.sampler == "tpe" else optuna.samplers.RandomSampler(seed=base.seed)
    study = optuna.create_study(
        study_name=tcfg.study or base.name, storage=storage_url(base, tcfg), sampler=sampler,
        direction=tcfg.direction, load_if_exists=True,
    )

    def objective(trial) -> float:
        trial_raw = json.loads(json.dumps(base_raw))
        for key, dim in tcfg.space.items():
            set_dotted(trial_raw, key, suggest(trial, key, dim), f"tune.space.{key}")
        trial_raw["name"] = f"{base.name}-trial{trial.number}"
        cfg = validate_config(trial_raw, source=config_path)
        console.print(f"[bold magenta]trial {trial.number}[/] " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()))
        result = run_pipeline(cfg)
        value = result.metrics.get(stage, {}).get(metric)
        if value is None or not math.isfinite(float(value)):
            raise UserError(f"tune.metric {tcfg.metric}: stage '{stage}' reported no finite '{metric}' (it reported: {', '.join(result.metrics.get(stage, {}))})")
        trial.set_user_attr("run_dir", str(cfg.run_dir))
        return float(value)

    study.optimize(objective, n_trials=tcfg.trials, catch=())
    best = study.best_trial
    out = Path(base.runs_dir) / f"{base.name}-tune"
    out.mkdir(parents=True, exist_ok=True)
    best_raw = json.loads(json.dumps(base_raw))
    for key, value in best.params.items():
        set_dotted(best_raw, key, value, key)
    (out / "best.yaml").write_text(yaml.safe_dump(best_raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    summary = {
        "metric": tcfg.metric,
        "direction": tcfg.direction,
        "best_value": best.value,
        "best_params": best.params,
        "best_run": best.user_attrs.get("run_dir"),
        "trials": [{"number": t.number, "value": t.value, "params": t.params, "state": t.state.name} for t in study.trials],
    }
    (out / "study.json").write_text(json.dumps(summary, indent=2))
    return summary


def _probe_value(dim: SearchDim):
    if dim.choices is not None:
        return dim.choices[0]
    return int(dim.low) if dim.int else dim.low
