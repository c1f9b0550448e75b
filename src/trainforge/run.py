"""Stage runner: the run directory, the manifest, caching and resume, tracking.

    runs/<name>/
      config.resolved.yaml   every default filled in
      manifest.json          per stage: key, inputs/outputs with sha256, versions, seconds, status
      data/ tokenizer/ model/ eval/ ...   what each stage wrote
      report.html

The stages are found in trainforge.stages, where each declares itself once (StageSpec): its config
section, entry, the run-directory paths it reads and writes, the stages it depends on (`after`).
They run in topological order over `after`; a stage runs when its section is in the config.

A stage reads only files in the run directory (plus its config) and writes files there; nothing
passes between stages in memory. A stage's cache key hashes every config section it reads (its own,
plus `sections`), the seed, the keys of the stages it depends on and the sha256 of every file it
reads, so a stage is skipped only when all of those are unchanged and its recorded outputs are still
on disk, unmodified. A dependency that does not run now (left out of the config, or not asked for
with --only) contributes the key the manifest has on record for it, so `--only eval` and a full
run agree on eval's key.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainforge import stages
from trainforge.config import Config, dump_config
from trainforge.console import console, quiet_libraries
from trainforge.errors import StageFailed, UserError
from trainforge.files import sha256_file, write_json_atomic
from trainforge.paths import CONFIG_RESOLVED, MANIFEST
from trainforge.stages import StageSpec
from trainforge.threads import torch_threads


@dataclass
class StageContext:
    """What a stage function gets: the whole resolved config and where to write."""

    config: Config
    run_dir: Path
    stage: str
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def section(self) -> Any:
        return getattr(self.config, self.stage)

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)


# --------------------------------------------------------------------------- hashing


def hash_paths(run_dir: Path, rel_paths: tuple[str, ...] | list[str]) -> dict[str, str]:
    """{relative file path: sha256} for every file under the given files/folders that exist."""
    out: dict[str, str] = {}
    for rel in rel_paths:
        p = run_dir / rel
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            out[f.relative_to(run_dir).as_posix()] = sha256_file(f)
    return out


def stage_key(cfg: Config, stage: StageSpec, dependency_keys: dict[str, str], inputs: dict[str, str]) -> str:
    """sha256 of what decides a stage's outputs: the config sections it reads, the seed, the keys
    of the stages it depends on ({name: key}) and its inputs ({path: sha256})."""
    sections = {}
    for name in stage.key_sections:
        section = getattr(cfg, name)
        sections[name] = section.model_dump(mode="json") if hasattr(section, "model_dump") else section  # `device` is a value
    payload = {"stage": stage.name, "sections": sections, "seed": cfg.seed, "after": dependency_keys, "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- manifest


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["trainforge", "torch", "transformers", "tokenizers", "peft", "scikit-learn", "mlflow", "numpy"]
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def read_manifest(run_dir: Path) -> dict:
    p = run_dir / MANIFEST
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            console.print(f"[yellow]{p} is unreadable; starting a fresh manifest[/]")
    return {"stages": {}}


def seed_everything(seed: int) -> None:
    """Seed every generator a stage may draw from, before each stage. torch is imported here even
    if no stage has loaded it yet: a stage that imports it later (and builds a model) must not start
    from an unseeded generator, or two runs of one config differ."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- the runner


@dataclass
class RunResult:
    run_dir: Path
    ran: list[str]
    cached: list[str]
    metrics: dict[str, dict[str, float]]


class Ranks:
    """Under torchrun (WORLD_SIZE > 1) rank 0 owns the run directory, the manifest and tracking: it
    decides per stage (run, cached, error) and tells the others; every rank runs the `distributed`
    stages together, rank 0 alone the rest, and all meet at a barrier after each stage.

    Decisions and barriers go through the group's CPU side (gloo), so followers wait for rank 0's
    single-process stages in a gloo all-reduce under `timeout_minutes` (train.dist_timeout_minutes),
    not in an NCCL barrier."""

    def __init__(self, device: str = "auto", timeout_minutes: float | None = None):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.main = True
        if self.world > 1:
            from trainforge.device import resolve_device
            from trainforge.train.distributed import init

            self.main = init(timeout_minutes, resolve_device(device, "device")).is_main

    def agree(self, decision: tuple | None) -> tuple:
        if self.world == 1:
            return decision
        import torch.distributed as dist

        box = [decision]
        dist.broadcast_object_list(box, src=0, device="cpu")
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            import torch
            import torch.distributed as dist

            dist.all_reduce(torch.zeros(1))  # a CPU tensor: gloo, under the group's timeout

    def close(self) -> None:
        """Meet once more, then leave the group: a rank that exits with its gloo group still open can abort in
        the group's destructor (std::terminate) while rank 0 is still writing the report."""
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                self.barrier()
                dist.destroy_process_group()


def _follow_rank_zero(cfg: Config, plan: list[StageSpec], ranks: Ranks) -> RunResult:
    """A rank other than 0: take rank 0's decisions, join the distributed stages, write nothing else."""
    console.quiet = True
    for stage in plan:
        decision = ranks.agree(None)
        if decision[0] == "error":
            raise UserError(decision[1])
        if decision[0] == "run" and stage.distributed:
            seed_everything(cfg.seed)
            stages.load(stage.entry)(StageContext(cfg, cfg.run_dir, stage.name))
        ranks.barrier()
    ranks.close()
    return RunResult(cfg.run_dir, [], [], {})


def plan_stages(cfg: Config, only: tuple[str, ...] = ()) -> list[StageSpec]:
    """The stages this run goes through, in order: those the config enables (and, with `only`, asks for)."""
    return [s for s in stages.stage_specs() if getattr(cfg, s.name, None) is not None and (not only or s.name in only)]


def run_pipeline(cfg: Config, force: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> RunResult:
    """Run every stage the config enables, in order, skipping unchanged ones."""
    known = [s.name for s in stages.stage_specs()]
    for name in (*force, *only):
        if name not in known:
            raise UserError(f"--force/--only {name}: no such stage (stages: {', '.join(known)})")
    plan = plan_stages(cfg, only)
    if not plan:
        raise UserError("the config enables no stage: add a data:, train: or eval: section")
    loop = getattr(cfg, "train", None) or getattr(cfg, "pretrain", None)  # the group's timeout is the training section's
    ranks = Ranks(cfg.device, getattr(loop, "dist_timeout_minutes", None))
    if not ranks.main:
        return _follow_rank_zero(cfg, plan, ranks)

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_RESOLVED).write_text(dump_config(cfg), encoding="utf-8")
    manifest = read_manifest(run_dir)
    manifest.update(
        name=cfg.name,
        updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        versions=package_versions(),
        git_commit=git_commit(),
        config_sha256=sha256_file(run_dir / CONFIG_RESOLVED),
    )
    manifest.setdefault("created", manifest["updated"])
    from trainforge.device import machine

    manifest.update(started=manifest["updated"], machine=machine(), status="running")  # the report's summary reads these
    manifest.pop("finished", None)
    started = time.time()
    stages_rec: dict = manifest.setdefault("stages", {})

    quiet_libraries()
    from trainforge.tracking import Tracker

    tracker = Tracker(cfg)
    result = RunResult(run_dir, [], [], {})
    keys: dict[str, str] = {}  # this run's key of each stage it has been through
    failed = False
    try:
        for stage in plan:
            missing = [r for r in stage.reads if not (run_dir / r).exists()]
            if missing:
                message = (f"stage '{stage.name}' needs {', '.join(missing)} in {run_dir}/ — enable the stage "
                           f"that writes it in the config, or run it first")
                ranks.agree(("error", message))
                raise UserError(message)
            inputs = hash_paths(run_dir, stage.reads + stage.reads_if_present)
            # A dependency not in this run (not asked for with --only, or its section left out) counts
            # with the key the last run of it left, so `--only eval` and a full run agree on eval's key.
            after = {d: keys[d] if d in keys else stages_rec.get(d, {}).get("key", "") for d in stage.after}
            key = stage_key(cfg, stage, after, inputs)
            rec = stages_rec.get(stage.name, {})
            if stage.name not in force and _is_fresh(rec, key, run_dir):
                ranks.agree(("cached",))
                ranks.barrier()
                console.print(f"[dim]{stage.name:>8}  cached[/]  (inputs and config unchanged)")
                result.cached.append(stage.name)
                result.metrics[stage.name] = rec.get("metrics", {})
                tracker.log_metrics(stage.name, rec.get("metrics", {}))
                keys[stage.name] = key
                continue

            ranks.agree(("run",))
            console.print(f"[bold cyan]{stage.name:>8}[/]  running")
            stages_rec[stage.name] = rec = {"status": "running", "key": key, "inputs": inputs}
            write_json_atomic(run_dir / MANIFEST, manifest)
            seed_everything(cfg.seed)
            ctx = StageContext(cfg, run_dir, stage.name)
            t0 = time.perf_counter()
            try:
                with torch_threads(None):  # whatever a stage sets, the next one starts from the same count
                    metrics = stages.load(stage.entry)(ctx) or {}
            except KeyboardInterrupt:
                rec.update(status="interrupted", seconds=round(time.perf_counter() - t0, 2))
                raise
            except Exception as e:  # noqa: BLE001 — recorded, then re-raised with the stage named
                rec.update(status="failed", error=f"{type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 2))
                if isinstance(e, UserError):
                    raise UserError(f"stage '{stage.name}': {e}") from None
                raise StageFailed(stage.name, e) from e
            rec.update(
                status="ok",
                seconds=round(time.perf_counter() - t0, 2),
                finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                outputs=hash_paths(run_dir, stage.writes),
                metrics=metrics,
            )
            rec.pop("error", None)
            ranks.barrier()
            console.print(f"[green]{stage.name:>8}  done[/] in {rec['seconds']:.1f}s  {_short(metrics)}")
            result.ran.append(stage.name)
            result.metrics[stage.name] = metrics
            tracker.log_metrics(stage.name, metrics)
            keys[stage.name] = key
            write_json_atomic(run_dir / MANIFEST, manifest)
    except BaseException:
        failed = True
        raise
    finally:
        # the run id goes in before the report is written: the report's overview reads it from here
        manifest["mlflow_run_id"] = tracker.run_id
        manifest.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seconds=round(time.time() - started, 2),
                        status="failed" if failed else "ok")
        write_json_atomic(run_dir / MANIFEST, manifest)
        from trainforge.report.html import write_report

        report = write_report(run_dir)
        manifest["report"] = {"path": report.name, "sha256": sha256_file(report)}
        write_json_atomic(run_dir / MANIFEST, manifest)
        tracker.finish(run_dir, failed)
    ranks.close()
    return result


def _is_fresh(rec: dict, key: str, run_dir: Path) -> bool:
    if rec.get("status") != "ok" or rec.get("key") != key:
        return False
    outputs = rec.get("outputs") or {}
    for rel, digest in outputs.items():
        p = run_dir / rel
        if not p.is_file() or sha256_file(p) != digest:
            return False
    return bool(outputs)


def _short(metrics: dict) -> str:
    shown = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(metrics.items())[:4]]
    return "  ".join(shown)
