"""The stage runner end to end on a tiny config: files written, manifest, caching, resume."""

from __future__ import annotations

import json

import pytest

from trainforge.config import load_config, validate_config
from trainforge.errors import StageFailed, UserError
from trainforge.run import run_pipeline

from .conftest import tiny_config_dict


def files_under(root):
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def first_run(tiny_config):
    cfg = load_config(tiny_config)
    result = run_pipeline(cfg)
    return cfg, result


def test_end_to_end_writes_the_run_directory(first_run):
    cfg, result = first_run
    assert result.ran == ["data", "train", "eval"] and result.cached == []
    files = files_under(cfg.run_dir)
    expected = {
        "config.resolved.yaml", "manifest.json", "report.html",
        "data/train.jsonl", "data/val.jsonl", "data/test.jsonl", "data/stats.json",
        "data/quarantine/records.jsonl", "data/rejected/exact_duplicate.jsonl",
        "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
        "model/config.json", "model/model.safetensors", "model/tokenizer.json", "model/tokenizer_config.json",
        "model/trainer_state.json", "model/trainforge.json",
        "eval/metrics.json", "eval/predictions.jsonl", "eval/confusion_matrix.json", "eval/confusion_matrix.png",
    }
    assert expected <= files, f"missing: {expected - files}"
    info = json.loads((cfg.run_dir / "model/trainforge.json").read_text())
    assert info["task"] == "classification" and info["family"] == "bert" and info["max_length"] == 32
    assert info["labels"] == sorted(info["labels"]) and len(info["labels"]) == 2 and info["method"] == "full"
    stats = json.loads((cfg.run_dir / "data/stats.json").read_text())
    assert stats["read"] == 261 and stats["quarantined"] == 1 and stats["dropped"]["exact_duplicate"] == 20
    assert stats["read"] == stats["kept"] + stats["quarantined"] + sum(stats["dropped"].values())
    q = [json.loads(x) for x in (cfg.run_dir / "data/quarantine/records.jsonl").read_text().splitlines()]
    assert q[0]["line"] == 261 and q[0]["reason"] == "invalid_json"
    metrics = json.loads((cfg.run_dir / "eval/metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == len((cfg.run_dir / "data/test.jsonl").read_text().splitlines())
    for side in ("model", "baseline"):
        assert 0.0 <= metrics[side]["accuracy"] <= 1.0 and 0.0 <= metrics[side]["macro_f1"] <= 1.0
    report = (cfg.run_dir / "report.html").read_text()
    assert "baseline" in report and "data funnel" in report


def test_manifest_records_hashes_versions_and_timing(first_run):
    cfg, _ = first_run
    m = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert set(m["stages"]) == {"data", "train", "eval"}
    train = m["stages"]["train"]
    assert train["status"] == "ok" and train["seconds"] > 0
    assert set(train["inputs"]) == {"data/train.jsonl", "data/val.jsonl"}
    assert all(len(h) == 64 for h in train["outputs"].values())
    assert "model/model.safetensors" in train["outputs"]
    assert {"python", "torch", "transformers"} <= set(m["versions"])
    assert "git_commit" in m and len(m["config_sha256"]) == 64


def test_second_run_is_cached_and_a_changed_key_reruns_from_there(first_run, tiny_config):
    cfg, _ = first_run
    again = run_pipeline(load_config(tiny_config))
    assert again.ran == [] and again.cached == ["data", "train", "eval"]

    changed_eval = run_pipeline(load_config(tiny_config, ["eval.batch_size=8"]))
    assert changed_eval.cached == ["data", "train"] and changed_eval.ran == ["eval"]

    changed_train = run_pipeline(load_config(tiny_config, ["eval.batch_size=8", "train.lr=2e-3"]))
    assert changed_train.cached == ["data"] and changed_train.ran == ["train", "eval"]

    forced = run_pipeline(load_config(tiny_config, ["eval.batch_size=8", "train.lr=2e-3"]), force=("data",))
    assert forced.ran[0] == "data"  # same seed → same files → train and eval stay cached
    assert forced.cached == ["train", "eval"]


def test_only_one_stage_keeps_the_key_chain(first_run, tiny_config):
    cfg, _ = first_run
    only_eval = run_pipeline(load_config(tiny_config), only=("eval",))
    assert only_eval.cached == ["eval"] and only_eval.ran == []
    full = run_pipeline(load_config(tiny_config))
    assert full.cached == ["data", "train", "eval"]


def test_a_modified_output_invalidates_the_cache(first_run, tiny_config):
    cfg, _ = first_run
    with open(cfg.run_dir / "data" / "val.jsonl", "a") as f:
        f.write('{"id": "x", "text": "新的", "label": "positive"}\n')
    result = run_pipeline(load_config(tiny_config))
    # data's recorded output changed on disk, so data reruns; it rewrites the same bytes (same seed),
    # so the stages after it find their inputs unchanged and stay cached.
    assert result.ran == ["data"] and result.cached == ["train", "eval"]
    assert "新的" not in (cfg.run_dir / "data" / "val.jsonl").read_text()


def test_failed_stage_keeps_earlier_outputs_and_next_run_resumes(tiny_config, monkeypatch):
    import trainforge.evaluate.stage as eval_stage

    def boom(ctx):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(eval_stage, "run_eval", boom)
    cfg = load_config(tiny_config)
    with pytest.raises(StageFailed, match="disk on fire"):
        run_pipeline(cfg)
    m = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert m["stages"]["eval"]["status"] == "failed" and "disk on fire" in m["stages"]["eval"]["error"]
    assert m["stages"]["train"]["status"] == "ok" and (cfg.run_dir / "model" / "model.safetensors").is_file()
    assert (cfg.run_dir / "report.html").is_file()

    monkeypatch.undo()
    result = run_pipeline(cfg)
    assert result.cached == ["data", "train"] and result.ran == ["eval"]


def test_stage_that_needs_missing_inputs_is_a_user_error(tmp_path, reviews_jsonl):
    raw = tiny_config_dict(reviews_jsonl, tmp_path / "runs")
    del raw["data"], raw["train"]
    with pytest.raises(UserError, match="needs .*data/train.jsonl"):
        run_pipeline(validate_config(raw))


def test_mlflow_tracking_logs_params_metrics_and_artifacts(tmp_path, reviews_jsonl):
    import mlflow

    raw = tiny_config_dict(reviews_jsonl, tmp_path / "runs", tracking=True)
    del raw["eval"]
    cfg = validate_config(raw)
    run_pipeline(cfg)
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    run = client.get_run(manifest["mlflow_run_id"])
    assert run.data.params["train.lr"] == "0.001" and run.data.params["data.sources.0.path"] == str(reviews_jsonl)
    assert "data.kept" in run.data.metrics and "train.best_val_accuracy" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "manifest.json", "config.resolved.yaml"} <= artifacts
    assert run.info.status == "FINISHED"


def test_report_names_the_mlflow_run_it_was_tracked_in(tmp_path, reviews_jsonl, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    raw = tiny_config_dict(reviews_jsonl, tmp_path / "runs", tracking=True)
    del raw["train"], raw["eval"]
    cfg = validate_config(raw)
    run_pipeline(cfg)
    run_id = json.loads((cfg.run_dir / "manifest.json").read_text())["mlflow_run_id"]
    report = (cfg.run_dir / "report.html").read_text()
    assert run_id and f"MLflow run {run_id}" in report and "not tracked" not in report


def test_same_config_same_weights_in_fresh_processes(tiny_config, tmp_path):
    """Two fresh `trainforge run`s of one config write byte-identical weights (torch is seeded even
    when no stage imported it before the model is built)."""
    import hashlib
    import os
    import subprocess
    import sys

    digests = []
    for name in ("first", "second"):
        proc = subprocess.run([sys.executable, "-m", "trainforge", "train", str(tiny_config), f"name={name}"],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.append(hashlib.sha256((tmp_path / "runs" / name / "model" / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
