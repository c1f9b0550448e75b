"""Optuna search: trials are real runs, a shared storage resumes the study, bad keys are caught."""

from __future__ import annotations

import json

import pytest
import yaml

from trainforge.errors import UserError
from trainforge.tune.search import tune

from ..conftest import tiny_config_dict


def write_config(tmp_path, reviews_jsonl, space):
    raw = tiny_config_dict(reviews_jsonl, tmp_path / "runs")
    raw["train"]["max_steps"] = 3
    raw["tune"] = {"metric": "eval.baseline_accuracy", "trials": 2, "sampler": "random", "space": space}
    p = tmp_path / "tune.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return p


def test_trials_are_runs_and_the_study_resumes_from_storage(tmp_path, reviews_jsonl):
    p = write_config(tmp_path, reviews_jsonl, {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                                               "train.batch_size": {"choices": [8, 16]}})
    first = tune(str(p), [])
    assert len(first["trials"]) == 2
    for t in first["trials"]:
        assert 1e-4 <= t["params"]["train.lr"] <= 1e-2 and t["params"]["train.batch_size"] in (8, 16)
        assert (tmp_path / "runs" / f"tiny-trial{t['number']}" / "eval" / "metrics.json").is_file()
    best = yaml.safe_load((tmp_path / "runs" / "tiny-tune" / "best.yaml").read_text())
    assert best["train"]["lr"] == pytest.approx(first["best_params"]["train.lr"])

    second = tune(str(p), [], trials=1)  # same default storage (runs/optuna.db) and study name
    assert [t["number"] for t in second["trials"]] == [0, 1, 2]
    stored = json.loads((tmp_path / "runs" / "tiny-tune" / "study.json").read_text())
    assert len(stored["trials"]) == 3


def test_unknown_key_in_the_space_is_a_user_error(tmp_path, reviews_jsonl):
    p = write_config(tmp_path, reviews_jsonl, {"train.lrr": {"low": 1e-4, "high": 1e-2}})
    with pytest.raises(UserError, match=r"train.lrr: unknown key — did you mean train.lr\?"):
        tune(str(p), [])


def test_bad_range_is_a_user_error(tmp_path, reviews_jsonl):
    p = write_config(tmp_path, reviews_jsonl, {"train.lr": {"low": 1e-2, "high": 1e-4}})
    with pytest.raises(UserError, match="low .* must be below high"):
        tune(str(p), [])
