"""The MLflow model registry: versions, the `champion`/`challenger` aliases, and their history.

    register   a model directory → a new version (its files logged as run artifacts), given an alias
    promote    challenger → champion; the old champion is remembered for rollback
    rollback   drop the challenger, or (no challenger) move champion back to the previous one
    status     aliases, versions and every transition with its reason

Every transition is stored in the registry itself, as a registered-model tag
`trainforge.transition.<ms since epoch>` holding JSON {time, action, from, to, reason, by}, so it is
visible from any machine that reaches the tracking server (`trainforge deploy status`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from trainforge.errors import UserError

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "trainforge.champion_history"
TRANSITION_PREFIX = "trainforge.transition."


def default_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the store `trainforge run` uses by default: sqlite:///runs/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('runs').resolve() / 'mlflow.db'}"


def client(uri: str):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def parse_models_uri(spec: str) -> tuple[str, str | None]:
    """`models:/NAME@ALIAS` → (NAME, ALIAS); `models:/NAME` → (NAME, None) meaning champion + challenger."""
    rest = spec[len("models:/"):]
    name, _, alias = rest.partition("@")
    if not name or "/" in name:
        raise UserError(f"{spec}: expected models:/NAME@ALIAS (e.g. models:/reviews-sentiment@champion) or models:/NAME")
    return name, alias or None


def register_dir(uri: str, name: str, model_dir: Path, alias: str | None, reason: str,
                 experiment: str = "trainforge", run_id: str | None = None, tags: dict | None = None) -> str:
    """Log `model_dir` as artifacts of an MLflow run and register them as a new version of `name`."""
    import mlflow

    c = client(uri)
    if run_id is None:  # no run of ours is active (tracking disabled): make one to hold the files
        from trainforge.tracking import experiment_id

        run_id = c.create_run(experiment_id(c, experiment, uri), run_name=f"register-{name}").info.run_id
        c.log_artifacts(run_id, str(model_dir), "registered_model")
        c.set_terminated(run_id)
    else:
        c.log_artifacts(run_id, str(model_dir), "registered_model")
    source = f"{c.get_run(run_id).info.artifact_uri}/registered_model"
    try:
        c.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        c.create_registered_model(name, description="registered by trainforge")
    version = c.create_model_version(name, source=source, run_id=run_id, tags=tags or {}).version
    if alias:
        previous = alias_version(c, name, alias)
        c.set_registered_model_alias(name, alias, version)
        log_transition(c, name, f"register→{alias}", previous, version, reason)
    return str(version)


def alias_version(c, name: str, alias: str) -> str | None:
    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except Exception:  # noqa: BLE001 — MLflow raises a generic exception for a missing alias
        return None


def download(uri: str, name: str, version: str, cache_root: Path) -> Path:
    """The version's files in a local cache folder (downloaded once per version)."""
    import mlflow

    target = cache_root / name / version
    if (target / "config.json").is_file():
        return target
    source = client(uri).get_model_version(name, version).source
    target.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(target), tracking_uri=uri))
    if path != target:  # the artifact folder lands inside dst_path under its own name
        for f in path.iterdir():
            f.replace(target / f.name)
    return target


def log_transition(c, name: str, action: str, old: str | None, new: str | None, reason: str, by: str = "cli") -> dict:
    event = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "action": action, "from": old, "to": new,
             "reason": reason, "by": by}
    key = f"{TRANSITION_PREFIX}{time.time_ns() // 1_000_000:013d}"
    c.set_registered_model_tag(name, key, json.dumps(event))
    return event


def _history(c, name: str) -> list[str]:
    return json.loads(c.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def promote(uri: str, name: str, reason: str, version: str | None = None, by: str = "cli") -> dict:
    """Make the challenger (or `version`) the champion; the old champion goes on the rollback stack."""
    c = client(uri)
    _require(c, name)
    new = version or alias_version(c, name, CHALLENGER)
    if new is None:
        raise UserError(f"{name}: no challenger to promote; register one (register.alias=challenger) or pass --version")
    old = alias_version(c, name, CHAMPION)
    if old == new:
        raise UserError(f"{name}: version {new} is already the champion")
    c.set_registered_model_alias(name, CHAMPION, new)
    if alias_version(c, name, CHALLENGER) == new:
        c.delete_registered_model_alias(name, CHALLENGER)
    if old is not None:
        c.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*_history(c, name), old]))
    return log_transition(c, name, "promote", old, new, reason, by)


def rollback(uri: str, name: str, reason: str, by: str = "cli", challenger_only: bool = False) -> dict:
    """Drop a live challenger; with none (and not `challenger_only`), move champion back one version."""
    c = client(uri)
    _require(c, name)
    challenger = alias_version(c, name, CHALLENGER)
    if challenger is not None:
        c.delete_registered_model_alias(name, CHALLENGER)
        c.set_model_version_tag(name, challenger, "trainforge.rolled_back", reason)
        return log_transition(c, name, "rollback-challenger", challenger, alias_version(c, name, CHAMPION), reason, by)
    if challenger_only:
        raise UserError(f"{name}: no challenger to roll back")
    history = _history(c, name)
    if not history:
        raise UserError(f"{name}: no previous champion to roll back to (deploy status shows the history)")
    old, new = alias_version(c, name, CHAMPION), history[-1]
    c.set_registered_model_alias(name, CHAMPION, new)
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[:-1]))
    if old is not None:
        c.set_model_version_tag(name, old, "trainforge.rolled_back", reason)
    return log_transition(c, name, "rollback-champion", old, new, reason, by)


def status(uri: str, name: str) -> dict:
    c = client(uri)
    model = _require(c, name)
    versions = sorted(c.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    transitions = [json.loads(v) for k, v in sorted(model.tags.items()) if k.startswith(TRANSITION_PREFIX)]
    return {
        "name": name,
        "aliases": {alias: str(v) for alias, v in (model.aliases or {}).items()},
        "versions": [{"version": str(v.version), "created": v.creation_timestamp, "run_id": v.run_id,
                      "rolled_back": (v.tags or {}).get("trainforge.rolled_back")} for v in versions],
        "champion_history": _history(c, name),
        "transitions": transitions,
    }


def _require(c, name: str):
    import mlflow

    try:
        return c.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        raise UserError(f"no registered model '{name}' in this tracking store; add a register: section and run the pipeline") from None
