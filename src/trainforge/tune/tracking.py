"""The study in MLflow (a parent run, each trial's run nested under it) and, optionally, in W&B offline.

    MLflow experiment
      └─ <name>-tune            parent: best value(s), report.html, best.yaml, study.json
           ├─ <name>-trial0     the trial's own run (opened by the runner), tagged mlflow.parentRunId = parent
           └─ …                 + trainforge.tune.{study,trial,state}
Each trial's run is made by trainforge.tracking like any run's; the nesting is the `mlflow.parentRunId`
tag, which is what the MLflow UI and `search_runs` use, so a trial needs no active parent run in its process.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from trainforge.config import Config
from trainforge.paths import MANIFEST


def _client(cfg: Config):
    from mlflow.tracking import MlflowClient

    from trainforge.tracking import tracking_uri

    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(cfg.tracking.experiment)
    return client, exp_id


def open_parent(cfg: Config, study_name: str) -> str | None:
    """The study's parent run id (the same one when a study resumes); None when tracking is off."""
    if not cfg.tracking.enabled:
        return None
    client, exp_id = _client(cfg)
    found = client.search_runs([exp_id], filter_string=f"tags.`trainforge.tune.study` = '{study_name}' "
                                                       "and tags.`trainforge.tune.role` = 'study'", max_results=1)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(exp_id, run_name=f"{cfg.name}-tune",
                            tags={"trainforge.tune.study": study_name, "trainforge.tune.role": "study"})
    return run.info.run_id


def tag_trial(cfg: Config, parent_id: str | None, run_dir: Path, study_name: str, number: int, state: str,
              params: dict) -> None:
    """Nest the trial's MLflow run (its id is in the run's manifest) under the study's parent run."""
    if parent_id is None or not (run_dir / MANIFEST).is_file():
        return
    run_id = json.loads((run_dir / MANIFEST).read_text()).get("mlflow_run_id")
    if not run_id:
        return
    client, _ = _client(cfg)
    client.set_tag(run_id, "mlflow.parentRunId", parent_id)
    for k, v in {"trainforge.tune.study": study_name, "trainforge.tune.trial": str(number),
                 "trainforge.tune.state": state, **{f"trainforge.tune.param.{p}": str(x) for p, x in params.items()}}.items():
        client.set_tag(run_id, k, v)


def close_parent(cfg: Config, parent_id: str | None, out: Path, summary: dict, interrupted: bool) -> None:
    if parent_id is None:
        return
    client, _ = _client(cfg)
    for i, value in enumerate(summary.get("best_values") or []):
        if value is not None:
            client.log_metric(parent_id, f"best.{summary['metrics'][i]}", float(value))
    counts: dict[str, int] = {}
    for t in summary["trials"]:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    for state, n in counts.items():
        client.log_metric(parent_id, f"trials.{state.lower()}", n)
    for name in ("report.html", "best.yaml", "study.json"):
        if (out / name).is_file():
            client.log_artifact(parent_id, str(out / name))
    if (out / "pareto").is_dir():
        client.log_artifacts(parent_id, str(out / "pareto"), artifact_path="pareto")
    client.set_terminated(parent_id, status="KILLED" if interrupted else "FINISHED")


def wandb_trial(out: Path, study_name: str, number: int, params: dict, state: str, values: list | None,
                metrics: list[str], steps: int | None) -> None:
    """One offline W&B run per trial (group = the study) under runs/<name>-tune/wandb/; `wandb sync` uploads them."""
    try:
        import wandb
    except ImportError:
        from trainforge.errors import UserError

        raise UserError("tune.wandb: true needs Weights & Biases: pip install wandb") from None
    run = wandb.init(mode="offline", dir=str(out), project=study_name, group=study_name, name=f"trial{number}",
                     config=params, reinit="create_new", settings=wandb.Settings(silent=True, console="off"))
    logged = {m: v for m, v in zip(metrics, values or []) if v is not None}
    run.log({**logged, "state": state, **({"steps": steps} if steps is not None else {})})
    run.finish()


def wandb_trials(out: Path, study_name: str, trials: list[dict], metrics: list[str]) -> None:
    """Log each finished trial not logged before (wandb/logged.json remembers), so a resumed study adds only its new ones."""
    record = out / "wandb" / "logged.json"
    logged = set(json.loads(record.read_text())) if record.is_file() else set()
    for t in trials:
        if t["number"] in logged or t["state"] == "RUNNING":
            continue
        wandb_trial(out, study_name, t["number"], t["params"], t["state"], t["values"], metrics, t["steps"])
        logged.add(t["number"])
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(sorted(logged)))
