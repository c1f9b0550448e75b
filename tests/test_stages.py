"""Stages declare themselves once (trainforge.stages): a stage added in a test joins the config, the
runner and the report without any of them being edited; the order is a graph; keys hash every section read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from trainforge import stages
from trainforge.config import Config, config_schema, dump_config, load_config
from trainforge.errors import UserError
from trainforge.run import run_pipeline
from trainforge.section import Section
from trainforge.stages import SectionSpec, StageSpec

from .conftest import tiny_config_dict

# --------------------------------------------------------------------------- a stage made in this test


class EchoConfig(Section):
    message: str = "hello"
    """What the stage writes to echo/message.txt."""
    repeat: int = 1
    """How many times it writes it."""


def run_echo(ctx) -> dict:
    out = ctx.path("echo")
    out.mkdir(exist_ok=True)
    (out / "message.txt").write_text(ctx.section.message * ctx.section.repeat, encoding="utf-8")
    return {"chars": len(ctx.section.message) * ctx.section.repeat}


def echo_section(run_dir: Path) -> str | None:
    p = run_dir / "echo" / "message.txt"
    return f"<h2>Echo</h2><p>echo said {p.read_text(encoding='utf-8')}</p>" if p.is_file() else None


@pytest.fixture
def echo_stage():
    spec = stages.register_stage(StageSpec(
        name="echo", section=EchoConfig, description="Write a message (a stage declared in a test).",
        entry=f"{__name__}:run_echo", writes=("echo",), after=("data",), report=f"{__name__}:echo_section",
    ))
    yield spec
    stages.unregister_stage("echo")


def write_yaml(tmp_path, raw: dict | str) -> Path:
    p = tmp_path / "echo.yaml"
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return p


def test_a_stage_registered_in_a_test_validates_runs_caches_and_reports(echo_stage, tmp_path):
    raw = {"name": "echo-run", "runs_dir": str(tmp_path / "runs"), "tracking": {"enabled": False}, "echo": {"message": "hi"}}
    cfg = load_config(write_yaml(tmp_path, raw))
    assert isinstance(cfg, Config) and cfg.echo.message == "hi" and cfg.echo.repeat == 1
    assert list(yaml.safe_load(dump_config(cfg)))[-1] == "echo"  # a section added later comes after the declared ones
    assert config_schema()["properties"]["echo"]["description"] == "Write a message (a stage declared in a test)."

    first = run_pipeline(cfg)
    assert first.ran == ["echo"] and first.metrics["echo"] == {"chars": 2}
    assert (cfg.run_dir / "echo" / "message.txt").read_text() == "hi"
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]["echo"]["outputs"]) == {"echo/message.txt"}
    assert "echo said hi" in (cfg.run_dir / "report.html").read_text()

    assert run_pipeline(load_config(write_yaml(tmp_path, raw))).cached == ["echo"]
    changed = run_pipeline(load_config(write_yaml(tmp_path, raw), ["echo.repeat=3"]))
    assert changed.ran == ["echo"] and (cfg.run_dir / "echo" / "message.txt").read_text() == "hihihi"
    assert run_pipeline(cfg, only=("echo",)).ran == ["echo"]  # back to repeat=1: a different key again


def test_a_registered_stage_section_rejects_unknown_keys_with_file_and_line(echo_stage, tmp_path):
    p = write_yaml(tmp_path, "name: x\necho:\n  mesage: hi\n")
    with pytest.raises(UserError) as e:
        load_config(p)
    assert f"{p}:3: echo.mesage: unknown key — did you mean echo.message?" in str(e.value)


def test_without_the_registration_the_section_is_an_unknown_key(tmp_path):
    with pytest.raises(UserError, match="echo: unknown key"):
        load_config(write_yaml(tmp_path, "name: x\necho: {}\n"))


def test_registering_a_taken_name_or_an_unknown_dependency_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        stages.register_stage(SectionSpec(name="train", section=EchoConfig, description="x"))
    with pytest.raises(ValueError, match="not a registered stage"):
        stages.register_stage(StageSpec(name="later", section=EchoConfig, description="x", entry="m:f", writes=("later",),
                                        after=("nope",)))
    assert "later" not in [s.name for s in stages.specs()]


# --------------------------------------------------------------------------- the order is a graph


def _stage(name: str, *after: str) -> StageSpec:
    return StageSpec(name=name, section=EchoConfig, description=name, entry="m:f", writes=(name,), after=after)


def test_built_in_order_is_unchanged_and_sections_follow_their_stages():
    assert [s.name for s in stages.stage_specs()] == ["collect", "data", "pretrain", "train", "eval", "compress", "register"]
    assert [s.name for s in stages.specs()][-4:] == ["serve", "tune", "label", "distill"]
    assert list(Config.model_fields) == ["name", "seed", "runs_dir", "tracking", "device", "collect", "data", "pretrain", "train", "eval",
                                         "compress", "register", "serve", "tune", "label", "distill"]
    assert stages.upstream("train") == ("collect", "data", "pretrain", "train")
    assert stages.upstream("eval") == ("collect", "data", "pretrain", "train", "eval")


def test_diamond_dependency_is_topological_with_registration_order_breaking_ties():
    #      a
    #     / \
    #    b   c
    #     \ /
    #      d
    top, left, right, bottom = _stage("a"), _stage("b", "a"), _stage("c", "a"), _stage("d", "b", "c")
    assert [s.name for s in stages.ordered([top, left, right, bottom])] == ["a", "b", "c", "d"]
    assert [s.name for s in stages.ordered([bottom, right, left, top])] == ["a", "c", "b", "d"]
    assert [s.name for s in stages.ordered([bottom, top, _stage("e"), right, left])] == ["a", "e", "c", "b", "d"]
    with pytest.raises(ValueError, match="cycle"):
        stages.ordered([_stage("x", "y"), _stage("y", "x")])


# --------------------------------------------------------------------------- register hashes serve.drift


def test_register_reruns_when_serve_drift_changes(tmp_path, reviews_jsonl, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    raw = tiny_config_dict(reviews_jsonl, tmp_path / "runs", tracking=True)
    del raw["eval"]
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw["register"] = {"name": "tiny-sentiment"}
    raw["serve"] = {"drift": {"reference_size": 50, "length_bins": 5}}
    path = write_yaml(tmp_path, raw)

    first = run_pipeline(load_config(path))
    assert first.ran == ["data", "train", "register"]
    cfg = load_config(path)
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert manifest["mlflow_run_id"] and manifest["mlflow_run_id"] in (cfg.run_dir / "report.html").read_text()
    bins = len(json.loads((cfg.run_dir / "register" / "drift_profile.json").read_text())["histograms"]["length"])

    assert run_pipeline(load_config(path)).cached == ["data", "train", "register"]
    changed = run_pipeline(load_config(path, ["serve.drift.length_bins=6"]))
    assert changed.cached == ["data", "train"] and changed.ran == ["register"]
    profile = json.loads((cfg.run_dir / "register" / "drift_profile.json").read_text())
    assert len(profile["histograms"]["length"]) == bins + 1  # the reference registered with the model has the new bins
    assert json.loads((cfg.run_dir / "register" / "registered.json").read_text())["version"] == "2"


def test_a_tracked_run_leaves_mlflow_tracking_uri_as_it_was(tmp_path, monkeypatch):
    import os

    import mlflow

    from trainforge.tracking import set_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    set_uri(mlflow, f"sqlite:///{tmp_path / 'a.db'}")
    assert "MLFLOW_TRACKING_URI" not in os.environ and mlflow.get_tracking_uri().endswith("a.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team-server:5000")
    set_uri(mlflow, f"sqlite:///{tmp_path / 'b.db'}")
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://team-server:5000"
