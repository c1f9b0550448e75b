"""MLflow tracking: one MLflow run per `trainforge run`, params = the flattened resolved config.

Default store: SQLite under the runs folder (`sqlite:///runs/mlflow.db`), so
`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db` shows every run with no server.
A team server is one setting away: `tracking.uri` or $MLFLOW_TRACKING_URI.

Artifacts of a local SQLite store go beside it (`runs/mlartifacts/`), not into MLflow's default
`./mlruns` of whatever directory the command was started in: an experiment is created with that
artifact location the first time it is used (a server keeps choosing its own).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from trainforge.config import Config, flatten
from trainforge.errors import UserError


def tracking_uri(cfg: Config) -> str:
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    db = Path(cfg.runs_dir).resolve() / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def set_uri(mlflow, uri: str) -> None:
    """mlflow.set_tracking_uri without its side effect on $MLFLOW_TRACKING_URI (mlflow ≥ 2 exports it for child
    processes): left set, the next run in this process — another runs_dir, a tuning trial, a notebook cell — would
    read it as the user's choice and log into this run's store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def local_artifact_root(uri: str) -> Path | None:
    """`<store's folder>/mlartifacts` for a sqlite:/// store; None for a server (it owns its artifact root)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]).parent / "mlartifacts"


def experiment_id(client, name: str, uri: str) -> str:
    """The experiment's id, created (artifacts beside a local store) when it does not exist yet."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = local_artifact_root(uri)
    return client.create_experiment(name, artifact_location=(root / name).resolve().as_uri() if root else None)


class Tracker:
    """Thin wrapper so the runner never branches on `tracking.enabled`."""

    def __init__(self, cfg: Config):
        self.run_id: str | None = None
        self._mlflow = None
        if not cfg.tracking.enabled:
            return
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow

        for noisy in ("alembic", "mlflow"):  # after the import: mlflow sets its own level when loaded
            logging.getLogger(noisy).setLevel(logging.WARNING)

        uri = tracking_uri(cfg)
        try:
            set_uri(mlflow, uri)
            mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(uri), cfg.tracking.experiment, uri))
            run = mlflow.start_run(run_name=cfg.name)
        except Exception as e:  # noqa: BLE001 — any store failure is a setup problem the user fixes
            raise UserError(f"tracking.uri {uri}: MLflow could not start a run ({e}); set tracking.enabled=false to run without it") from None
        self._mlflow, self.run_id = mlflow, run.info.run_id
        params = {k: ("" if v is None else str(v))[:6000] for k, v in flatten(cfg.model_dump(mode="json")).items()}
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            mlflow.log_params(dict(items[i : i + 100]))
        mlflow.set_tags({"trainforge.run_dir": str(cfg.run_dir.resolve()), "trainforge.name": cfg.name})

    def log_metrics(self, stage: str, metrics: dict) -> None:
        if self._mlflow is None:
            return
        numeric = {f"{stage}.{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:
            self._mlflow.log_metrics(numeric)

    def finish(self, run_dir: Path, failed: bool = False) -> None:
        if self._mlflow is None:
            return
        for name in ("report.html", "manifest.json", "config.resolved.yaml"):
            if (run_dir / name).is_file():
                self._mlflow.log_artifact(str(run_dir / name))
        self._mlflow.end_run(status="FAILED" if failed else "FINISHED")
