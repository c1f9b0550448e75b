"""What a study leaves in runs/<name>-tune/: best.yaml (or pareto/), study.json and report.html.

    best.yaml            the best trial's full config under the study's own name: `trainforge run best.yaml`
                         reproduces the trial's metric (same seed, same data)
    pareto/trial<N>.yaml a multi-objective study's non-dominated trials, one config each; pareto.json their values
    study.json           every trial: state, value(s), parameters, steps trained, pruned step or error, run directory
    report.html          trial table, optimisation history, intermediate curves, fANOVA importances, the front
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from trainforge.config import set_dotted
from trainforge.files import write_json_atomic


def best_config(s: Search, params: dict) -> dict:
    """The base config with a trial's parameters: what reproduces that trial under the study's own name."""
    raw = json.loads(json.dumps(s.base_raw))
    for key, value in params.items():
        set_dotted(raw, key, value, key)
    return raw


def dump_yaml(raw: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")


def trial_record(t) -> dict:
    return {
        "number": t.number,
        "state": t.state.name,
        # a pruned trial's value in Optuna is its last report, not the metric: only a complete trial has values
        "values": list(t.values) if t.values is not None and t.state.name == "COMPLETE" else None,
        "value": t.values[0] if t.values is not None and len(t.values) == 1 and t.state.name == "COMPLETE" else None,
        "params": t.params,
        "steps": t.user_attrs.get("steps"),
        "pruned_at_step": t.user_attrs.get("pruned_at_step"),
        "error": t.user_attrs.get("error"),
        "run_dir": t.user_attrs.get("run_dir"),
        "seconds": round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
        if t.datetime_complete and t.datetime_start else None,
        "intermediate": {int(k): v for k, v in sorted(t.intermediate_values.items())},
    }


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    """a is at least as good as b on every objective and better on one."""
    sign = [1 if d == "maximize" else -1 for d in directions]
    ge = all(s * x >= s * y for s, x, y in zip(sign, a, b))
    return ge and any(s * x > s * y for s, x, y in zip(sign, a, b))


def write_outputs(s, study) -> dict:
    from trainforge.tune.report import write_tune_report

    out = s.out
    out.mkdir(parents=True, exist_ok=True)
    trials = [trial_record(t) for t in study.trials]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    summary = {
        "study": s.study_name,
        "storage": s.storage_url,
        "metric": s.tcfg.metrics[0] if len(s.tcfg.metrics) == 1 else s.tcfg.metrics,
        "metrics": s.tcfg.metrics,
        "direction": s.tcfg.directions[0] if len(s.tcfg.directions) == 1 else s.tcfg.directions,
        "directions": s.tcfg.directions,
        "sampler": s.tcfg.sampler,
        "pruner": s.tcfg.pruner.kind,
        "best_value": None, "best_values": None, "best_params": None, "best_run": None, "best_trial": None,
        "pareto": None,
        "total_steps": sum(t["steps"] or 0 for t in trials),
        "trials": trials,
    }
    if complete and len(s.tcfg.metrics) == 1:
        best = study.best_trial
        summary.update(best_value=best.value, best_values=[best.value], best_params=best.params,
                       best_run=best.user_attrs.get("run_dir"), best_trial=best.number)
        dump_yaml(best_config(s, best.params), out / "best.yaml")
    elif complete:
        front = sorted(study.best_trials, key=lambda t: t.number)
        shutil.rmtree(out / "pareto", ignore_errors=True)  # a resumed study's front may have lost members
        for t in front:
            dump_yaml(best_config(s, t.params), out / "pareto" / f"trial{t.number}.yaml")
        summary["pareto"] = [{"number": t.number, "values": list(t.values), "params": t.params,
                              "config": f"pareto/trial{t.number}.yaml", "run_dir": t.user_attrs.get("run_dir")} for t in front]
        write_json_atomic(out / "pareto.json", summary["pareto"])
    summary["report"] = str(out / "report.html")
    write_json_atomic(out / "study.json", summary)
    write_tune_report(out, s, study, summary)
    return summary
