"""Optuna search: trials are real runs, pruned from inside training, failures recorded, the study resumes,
workers share it, several objectives give a Pareto front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
import yaml

from trainforge.config import load_config
from trainforge.errors import UserError
from trainforge.train import callbacks
from trainforge.tune.outputs import dominates
from trainforge.tune.search import tune

from ..conftest import tiny_config_dict

SRC = str(Path(__file__).resolve().parents[2] / "src")


def write_config(tmp_path, reviews_jsonl, space, eval_stage=True, **tune_keys):
    raw = tiny_config_dict(reviews_jsonl, tmp_path / "runs")
    raw["train"]["max_steps"] = 3
    if not eval_stage:
        raw.pop("eval")
    raw["tune"] = {"metric": "eval.baseline_accuracy", "trials": 2, "sampler": "random", "space": space, **tune_keys}
    p = tmp_path / "tune.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return p


def by_number(summary):
    return {t["number"]: t for t in summary["trials"]}


# --------------------------------------------------------------------------- the space, no training


def test_conditional_space_samples_only_valid_configs(tmp_path, reviews_jsonl):
    import optuna

    from trainforge.tune.search import prepare
    from trainforge.tune.space import check_trial_config, sample_config

    space = {"train.method": {"choices": ["full", "lora"]},
             "train.lora.r": {"low": 2, "high": 8, "int": True, "when": {"train.method": "lora"}},
             "train.lora.alpha": {"low": 4, "high": 16, "int": True, "step": 4, "when": {"train.method": ["lora"]}},
             "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    s = prepare(str(write_config(tmp_path, reviews_jsonl, space)), [])
    default_r = s.base.train.lora.r
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        cfg = check_trial_config(sample_config(trial, s.tcfg.space, s.base_raw), "test")
        lora = cfg.train.method == "lora"
        assert ("train.lora.r" in trial.params) == lora and ("train.lora.alpha" in trial.params) == lora
        if lora:
            assert 2 <= cfg.train.lora.r <= 8 and cfg.train.lora.alpha in (4, 8, 12, 16)
            assert cfg.train.lora.r == trial.params["train.lora.r"]
        else:
            assert cfg.train.lora.r == default_r  # the config's value, not a sampled one
        seen.add(cfg.train.method)
        study.tell(trial, cfg.train.lr)
    assert seen == {"full", "lora"}


def test_space_errors_name_the_key_before_anything_runs(tmp_path, reviews_jsonl):
    with pytest.raises(UserError, match=r"train.lrr: unknown key — did you mean train.lr\?"):
        tune(str(write_config(tmp_path, reviews_jsonl, {"train.lrr": {"low": 1e-4, "high": 1e-2}})), [])
    with pytest.raises(UserError, match="low .* must be below high"):
        tune(str(write_config(tmp_path, reviews_jsonl, {"train.lr": {"low": 1e-2, "high": 1e-4}})), [])
    with pytest.raises(UserError, match="train.layer_lr_decay"):  # a bound the config itself refuses (gt=0)
        tune(str(write_config(tmp_path, reviews_jsonl, {"train.layer_lr_decay": {"low": -1.0, "high": 1.0}})), [])
    with pytest.raises(UserError, match="tune.space.train.lr: the grid sampler needs choices or a step"):
        tune(str(write_config(tmp_path, reviews_jsonl, {"train.lr": {"low": 1e-4, "high": 1e-2}}, sampler="grid")), [])
    with pytest.raises(UserError, match="tune.space.train.lora.r.when: train.methd is not a key"):
        tune(str(write_config(tmp_path, reviews_jsonl, {"train.lora.r": {"low": 2, "high": 4, "int": True,
                                                                         "when": {"train.methd": "lora"}}})), [])
    assert not (tmp_path / "runs" / "tiny-trial0").exists()


# --------------------------------------------------------------------------- pruning


class ModelProbe:
    """Holds only weak references to every model trained, and checks at each new fit that the earlier ones are gone."""

    def __init__(self):
        self.refs: list[weakref.ref] = []
        self.alive_at_start: list[int] = []

    def on_step_end(self, step, model, optimizer):
        model = callbacks.unwrap(model)
        if not any(r() is model for r in self.refs):
            self.alive_at_start.append(sum(r() is not None for r in self.refs))
            self.refs.append(weakref.ref(model))


@pytest.mark.slow
def test_pruned_trial_stops_early_frees_its_model_and_says_so(tmp_path, reviews_jsonl):
    # trial 1's lr makes its validation loss blow up: behind trial 0 at the first evaluation. Trial 2 repeats
    # trial 0 exactly, so it is never behind the median and runs to the end.
    space = {"train.lr": {"low": 1e-5, "high": 1.0, "log": True}}
    p = write_config(tmp_path, reviews_jsonl, space, eval_stage=False, metric="train.final_loss", direction="minimize",
                     trials=3, pruner={"kind": "median", "startup_trials": 1},
                     enqueue=[{"train.lr": 1e-4}, {"train.lr": 0.5}, {"train.lr": 1e-4}])
    raw = yaml.safe_load(p.read_text())
    raw["train"].update(max_steps=10, eval_every=2)
    p.write_text(yaml.safe_dump(raw))
    probe = ModelProbe()
    with callbacks.active(probe):
        s = tune(str(p), [])
    trials = by_number(s)
    assert [trials[n]["state"] for n in (0, 1, 2)] == ["COMPLETE", "PRUNED", "COMPLETE"]
    pruned = trials[1]
    assert pruned["pruned_at_step"] == pruned["steps"] < 10 and trials[0]["steps"] == 10
    assert max(pruned["intermediate"]) == pruned["pruned_at_step"]  # it reported up to the step it stopped at
    run_dir = tmp_path / "runs" / "tiny-trial1"
    marker = json.loads((run_dir / "pruned.json").read_text())
    assert marker["trial"] == 1 and marker["step"] == pruned["pruned_at_step"] and marker["score"] == "val_loss"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "pruned" and manifest["tune"]["state"] == "pruned"
    assert not (run_dir / "model").exists()
    # each trial's model was gone (no reference left, not even through the pruning exception) when the next trial started
    assert probe.alive_at_start == [0, 0, 0] and len(probe.refs) == 3
    assert all(r() is None for r in probe.refs)
    report = (tmp_path / "runs" / "tiny-tune" / "report.html").read_text()
    assert "pruned @ " in report and "Intermediate values" in report


# --------------------------------------------------------------------------- failures, tracking, best.yaml


@pytest.mark.slow
def test_failing_and_invalid_trials_do_not_stop_the_study_and_trials_nest_in_mlflow(tmp_path, reviews_jsonl):
    space = {"train.model": {"choices": ["encoder-tiny", str(tmp_path / "no-such-model")]},
             "train.layer_lr_decay": {"low": 0.5, "high": 1.0}}
    p = write_config(tmp_path, reviews_jsonl, space, eval_stage=False, metric="train.final_loss", direction="minimize",
                     trials=3, enqueue=[{"train.model": str(tmp_path / "no-such-model"), "train.layer_lr_decay": 1.0},
                                        {"train.model": "encoder-tiny", "train.layer_lr_decay": -2.0},
                                        {"train.model": "encoder-tiny", "train.layer_lr_decay": 0.8}])
    raw = yaml.safe_load(p.read_text())
    raw["tracking"] = {"enabled": True, "uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    p.write_text(yaml.safe_dump(raw))
    s = tune(str(p), [])
    trials = by_number(s)
    assert [trials[n]["state"] for n in (0, 1, 2)] == ["FAIL", "FAIL", "COMPLETE"]
    assert "no-such-model" in trials[0]["error"] and "stage 'train'" in trials[0]["error"]
    assert trials[1]["error"].startswith("invalid trial config, not run") and "train.layer_lr_decay" in trials[1]["error"]
    assert not (tmp_path / "runs" / "tiny-trial1").exists()  # refused before anything ran
    assert s["best_trial"] == 2

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("trainforge").experiment_id])
    parent = [r for r in runs if r.data.tags.get("trainforge.tune.role") == "study"]
    assert len(parent) == 1 and parent[0].data.metrics["best.train.final_loss"] == pytest.approx(s["best_value"])
    children = {r.data.tags["trainforge.tune.trial"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert set(children) == {"0", "2"}  # trial 1 never ran, so it has no run
    assert children["0"].data.tags["trainforge.tune.state"] == "FAIL" and children["2"].data.tags["trainforge.tune.state"] == "COMPLETE"
    assert children["2"].data.metrics["train.final_loss"] == pytest.approx(s["best_value"])
    assert "report.html" in {a.path for a in client.list_artifacts(parent[0].info.run_id)}


@pytest.mark.slow
def test_ctrl_c_leaves_a_study_the_next_tune_resumes_and_best_yaml_reproduces(tmp_path, reviews_jsonl):
    from trainforge.run import run_pipeline

    p = write_config(tmp_path, reviews_jsonl, {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                                               "train.batch_size": {"choices": [8, 16]}},
                     eval_stage=False, metric="train.final_loss", direction="minimize", trials=3)
    raw = yaml.safe_load(p.read_text())
    raw["train"]["max_steps"] = 400  # trial 1 is interrupted long before its end
    raw["tune"]["enqueue"] = [{"train.lr": 3e-3, "train.batch_size": 16}]
    p.write_text(yaml.safe_dump(raw))
    env = os.environ | {"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    # 400 steps a trial (~15 s): the SIGINT must land while trial 1 trains, on an idle machine too
    proc = subprocess.Popen([sys.executable, "-m", "trainforge.cli", "tune", str(p), "train.max_steps=400"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # trial 0 runs 400 steps; the SIGINT comes once trial 1's training has started
    manifest = tmp_path / "runs" / "tiny-trial1" / "manifest.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.is_file() and json.loads(manifest.read_text() or "{}").get("stages", {}).get("train", {}).get("status") == "running":
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out[-3000:]
    stopped = json.loads((tmp_path / "runs" / "tiny-tune" / "study.json").read_text())
    assert [(t["number"], t["state"]) for t in stopped["trials"]] == [(0, "COMPLETE"), (1, "FAIL")]
    assert stopped["trials"][1]["error"].startswith("interrupted")

    resumed = tune(str(p), ["train.max_steps=400"], trials=1)  # the same storage (runs/optuna.journal) and study name
    assert [(t["number"], t["state"]) for t in resumed["trials"]] == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE")]
    assert (tmp_path / "runs" / "tiny-trial2" / "model").is_dir()

    best = load_config(tmp_path / "runs" / "tiny-tune" / "best.yaml")
    assert best.name == "tiny" and best.train.lr == pytest.approx(resumed["best_params"]["train.lr"])
    again = run_pipeline(best)
    assert again.metrics["train"]["final_loss"] == pytest.approx(resumed["best_value"], abs=1e-6)


# --------------------------------------------------------------------------- workers


def _worker_study(tmp_path, reviews_jsonl, storage=None, trials=4):
    p = write_config(tmp_path, reviews_jsonl, {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
                     eval_stage=False, metric="train.final_loss", direction="minimize", trials=trials, workers=2,
                     **({"storage": storage} if storage else {}))
    raw = yaml.safe_load(p.read_text())
    raw["train"]["threads"] = None  # every core: each worker's trials get cores // 2 instead
    p.write_text(yaml.safe_dump(raw))
    return tune(str(p), [])


@pytest.mark.slow
def test_two_workers_share_one_study_and_never_run_the_same_trial(tmp_path, reviews_jsonl):
    s = _worker_study(tmp_path, reviews_jsonl)
    numbers = [t["number"] for t in s["trials"]]
    assert sorted(numbers) == [0, 1, 2, 3] and all(t["state"] == "COMPLETE" for t in s["trials"])
    assert len({t["run_dir"] for t in s["trials"]}) == 4
    assert len({t["params"]["train.lr"] for t in s["trials"]}) == 4  # each worker its own seed: no repeated proposals
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for t in s["trials"]:
        resolved = yaml.safe_load((Path(t["run_dir"]) / "config.resolved.yaml").read_text())
        assert resolved["train"]["threads"] == threads
    assert s["storage"].endswith("optuna.journal")


def _postgres(tmp_path):
    """A throwaway PostgreSQL server on a unix socket in tmp_path, or a reason it cannot start here."""
    import shutil

    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        return None, "PostgreSQL is not installed (apt-get install postgresql; `make install` does it as root)"
    try:
        import psycopg  # noqa: F401 — SQLAlchemy's default PostgreSQL driver
    except ImportError:
        return None, "psycopg is not installed (pip install 'trainforge[tune]')"
    bindir = Path(initdb).resolve().parent
    as_postgres = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    if as_postgres and shutil.which("runuser") is None:
        return None, "running as root without runuser: cannot start PostgreSQL as the postgres user"
    base = Path(f"/tmp/tf-pg-{os.getpid()}")
    base.mkdir(exist_ok=True)
    data, sock = base / "data", base / "sock"
    sock.mkdir(exist_ok=True)
    if as_postgres:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    r = subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       capture_output=True, text=True)
    if r.returncode:
        return None, f"initdb failed: {r.stderr[-300:]}"
    r = subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                        f"-k {sock} -c listen_addresses='' -c fsync=off", "start"], capture_output=True, text=True)
    if r.returncode:
        return None, f"pg_ctl start failed: {r.stderr[-300:]}"
    stop = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
    r = subprocess.run([str(bindir / "createdb"), "-h", str(sock), "-U", "postgres", "optuna"], capture_output=True, text=True)
    if r.returncode:
        subprocess.run(stop, capture_output=True)
        return None, f"createdb failed: {r.stderr[-300:]}"
    return (f"postgresql://postgres@/optuna?host={sock}", lambda: (subprocess.run(stop, capture_output=True),
                                                                  shutil.rmtree(base, ignore_errors=True))), None


@pytest.mark.slow
def test_two_workers_share_a_postgresql_study(tmp_path, reviews_jsonl):
    server, why = _postgres(tmp_path)
    if server is None:
        pytest.skip(f"no PostgreSQL server for this test: {why}")
    url, stop = server
    try:
        s = _worker_study(tmp_path, reviews_jsonl, storage=url, trials=2)
        assert sorted(t["number"] for t in s["trials"]) == [0, 1] and all(t["state"] == "COMPLETE" for t in s["trials"])
        import optuna

        assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 2  # the study lives in the server
    finally:
        stop()


# --------------------------------------------------------------------------- several objectives


@pytest.mark.slow
def test_multi_objective_study_returns_the_non_dominated_set(tmp_path, reviews_jsonl):
    space = {"train.method": {"choices": ["full", "freeze", "lora"]}, "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    p = write_config(tmp_path, reviews_jsonl, space, eval_stage=False, sampler="nsga2", trials=5,
                     metric=["train.final_loss", "train.trainable_parameters"], direction=["minimize", "minimize"])
    s = tune(str(p), [])
    done = [t for t in s["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 5
    front = {t["number"] for t in s["pareto"]}
    dirs = s["directions"]
    for t in done:
        beaten = any(dominates(o["values"], t["values"], dirs) for o in done)
        assert (t["number"] in front) == (not beaten)  # the front is exactly the non-dominated trials
    for member in s["pareto"]:
        cfg = load_config(tmp_path / "runs" / "tiny-tune" / member["config"])
        assert cfg.train.method == member["params"]["train.method"] and cfg.train.lr == pytest.approx(member["params"]["train.lr"])
    assert not (tmp_path / "runs" / "tiny-tune" / "best.yaml").exists()
    report = (tmp_path / "runs" / "tiny-tune" / "report.html").read_text()
    assert "Pareto front" in report and "Parameter importance" in report


def test_dominates():
    assert dominates([1.0, 1.0], [2.0, 1.0], ["minimize", "minimize"])
    assert not dominates([1.0, 1.0], [1.0, 1.0], ["minimize", "minimize"])
    assert not dominates([1.0, 3.0], [2.0, 1.0], ["minimize", "minimize"])
    assert dominates([0.9, 1.0], [0.8, 1.0], ["maximize", "minimize"])


@pytest.mark.parametrize("example", ["tune.yaml", "tune_pareto.yaml"])
def test_examples_are_valid_searches(example, tmp_path):
    from trainforge.tune.search import prepare

    root = Path(__file__).resolve().parents[2]
    s = prepare(str(root / "examples" / example), [f"runs_dir={tmp_path}"])  # every key, bound and choice validated
    assert s.tcfg.space and s.storage_url.endswith("optuna.journal")


@pytest.mark.slow
def test_wandb_logs_each_finished_trial_once_offline(tmp_path):
    pytest.importorskip("wandb", reason="Weights & Biases is optional: pip install 'trainforge[wandb]'")
    from trainforge.tune.tracking import wandb_trials

    trials = [{"number": 0, "state": "COMPLETE", "values": [0.7], "params": {"train.lr": 1e-3}, "steps": 10},
              {"number": 1, "state": "RUNNING", "values": None, "params": {"train.lr": 1e-2}, "steps": None}]
    wandb_trials(tmp_path, "study", trials, ["eval.model_accuracy"])
    trials[1].update(state="PRUNED", steps=4)
    wandb_trials(tmp_path, "study", trials, ["eval.model_accuracy"])  # a resumed study: only trial 1 is new
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(list(r.glob("*.wandb")) for r in runs)
    assert json.loads((tmp_path / "wandb" / "logged.json").read_text()) == [0, 1]


def _tune_section(**keys):
    from trainforge.tune.config import TuneConfig

    return TuneConfig.model_validate(keys)


def test_grid_and_cmaes_samplers_cover_their_spaces():
    import optuna

    from trainforge.tune.search import make_sampler
    from trainforge.tune.space import sample_config

    grid = _tune_section(sampler="grid", space={"train.batch_size": {"choices": [8, 16]},
                                                "train.max_length": {"low": 16, "high": 48, "int": True, "step": 16},
                                                "train.dropout": {"low": 0.0, "high": 0.2, "step": 0.1}})
    study = optuna.create_study(sampler=make_sampler(grid, seed=0))
    study.optimize(lambda t: len(str(sample_config(t, grid.space, {}))), n_trials=30)
    combos = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(study.trials) == len(combos) == 2 * 3 * 3  # every combination once, then the sampler stops the study

    cma = _tune_section(sampler="cmaes", startup_trials=2, space={"train.lr": {"low": 1e-4, "high": 1e-1, "log": True},
                                                                 "train.dropout": {"low": 0.0, "high": 0.5}})
    study = optuna.create_study(sampler=make_sampler(cma, seed=0))
    study.optimize(lambda t: (sample_config(t, cma.space, {})["train"]["dropout"] - 0.3) ** 2, n_trials=14)
    assert all(1e-4 <= t.params["train.lr"] <= 1e-1 and 0 <= t.params["train.dropout"] <= 0.5 for t in study.trials)
    assert study.best_value < 0.01  # CMA-ES homes in on dropout 0.3


@pytest.mark.parametrize("kind", ["median", "percentile", "hyperband"])
def test_pruners_from_config_stop_a_trial_that_is_behind(kind):
    import optuna

    from trainforge.tune.pruning import PruneReport, make_pruner

    cfg = _tune_section(space={"train.lr": {"low": 1e-4, "high": 1e-2}},
                        pruner={"kind": kind, "startup_trials": 2, "min_resource": 1, "max_resource": 8})
    study = optuna.create_study(direction="maximize", pruner=make_pruner(cfg.pruner), sampler=optuna.samplers.RandomSampler(0))

    def objective(trial):  # trials 0-3 climb to 0.9; trial 4 stays at 0.5
        report = PruneReport(trial, cfg.pruner, "maximize")
        bad = trial.number == 4
        for step in range(1, 9):
            report.on_evaluate(step, {"val_loss": 0.7, "val_accuracy": 0.5 if bad else 0.5 + 0.05 * step})
        return 0.5 if bad else 0.9

    study.optimize(objective, n_trials=5)
    states = [t.state.name for t in study.trials]
    assert states[:4] == ["COMPLETE"] * 4 and states[4] == "PRUNED"
    assert max(study.trials[4].intermediate_values) < 8  # stopped before its last evaluation
