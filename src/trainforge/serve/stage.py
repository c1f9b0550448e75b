"""The register stage: put the run's model in the MLflow registry, with its drift reference.

    model/  (or compress/<candidate>/ when compress/candidate.json names a passing variant)
      + register/drift_profile.json (histograms of the training data and the model's labels on it)
      ──▶ MLflow: a new version of register.name, alias register.alias (challenger by default)

Writes register/drift_profile.json and register/registered.json {name, version, alias, source,
tracking_uri}. The files are logged to this run's MLflow run, so the registry is self-contained:
`trainforge serve models:/NAME@ALIAS` needs nothing else.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from trainforge import paths
from trainforge.console import console
from trainforge.errors import UserError
from trainforge.serve.config import DriftConfig, RegisterConfig


def model_to_register(run_dir: Path) -> tuple[Path, str]:
    """compress/'s passing candidate if there is one, else model/; with a note of which."""
    candidate = run_dir / paths.COMPRESS_CANDIDATE
    if candidate.is_file():
        info = json.loads(candidate.read_text())
        if info.get("path"):
            path = (run_dir / info["path"]).resolve()
            if not path.is_relative_to(run_dir.resolve()) or not path.is_dir():
                raise UserError(f"{candidate}: path {info['path']!r} is not a folder inside the run; re-run compress")
            return path, f"compress candidate {info.get('name')}"
    return run_dir / paths.MODEL, f"{paths.MODEL}/"


def run_register(ctx) -> dict:
    import mlflow

    from trainforge.files import write_json_atomic
    from trainforge.serve import registry
    from trainforge.serve.engine import check_model_dir, load_engine
    from trainforge.serve.server import PROFILE_FILE, profile_from_jsonl
    from trainforge.tracking import tracking_uri

    cfg: RegisterConfig = ctx.section
    out = ctx.path(paths.REGISTER)
    out.mkdir(exist_ok=True)
    model_dir, what = model_to_register(ctx.run_dir)
    check_model_dir(model_dir)
    drift_cfg = ctx.config.serve.drift if getattr(ctx.config, "serve", None) else DriftConfig()
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model"  # the registered files: the model plus its drift reference
        shutil.copytree(model_dir, staged)
        if cfg.drift_profile:
            profile = profile_from_jsonl(ctx.path(paths.TRAIN_SPLIT), load_engine(model_dir), drift_cfg, ctx.config.seed)
            write_json_atomic(out / PROFILE_FILE, profile)
            shutil.copy(out / PROFILE_FILE, staged / PROFILE_FILE)
        uri = tracking_uri(ctx.config)
        alias = cfg.alias
        if alias == "auto":
            has_champion = registry.alias_version(registry.client(uri), cfg.name, registry.CHAMPION) is not None
            alias = registry.CHALLENGER if has_champion else registry.CHAMPION
        active = mlflow.active_run()
        version = registry.register_dir(
            uri, cfg.name, staged, alias, reason=f"registered from run {ctx.config.name} ({what})",
            experiment=ctx.config.tracking.experiment, run_id=active.info.run_id if active else None,
            tags={"trainforge.run": ctx.config.name, "trainforge.source": what},
        )
    write_json_atomic(out / "registered.json", {"name": cfg.name, "version": version, "alias": alias,
                                                 "source": what, "tracking_uri": uri})
    console.print(f"          registered {cfg.name} version {version} ({what}) as @{alias}; "
                  f"serve it: trainforge serve models:/{cfg.name}" + (f"  (promote: trainforge deploy promote {cfg.name})" if alias == registry.CHALLENGER else ""))
    return {"version": float(version)}
