"""End to end: the register stage inside `trainforge run`, then `trainforge serve` as a real
process answering the official openai client (classify, and chat whose reply is the label)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from trainforge.errors import UserError


def test_register_stage_champion_then_challenger(tmp_path, classifier_run, monkeypatch):
    from trainforge.config import validate_config
    from trainforge.run import run_pipeline
    from trainforge.serve import registry
    from trainforge.serve.server import ModelSource, ServerState
    from trainforge.serve.config import ServeConfig

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    run = tmp_path / "runs" / "reviews"
    shutil.copytree(classifier_run / "model", run / "model")
    shutil.copytree(classifier_run / "data", run / "data")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = validate_config({"name": "reviews", "runs_dir": str(tmp_path / "runs"), "tracking": {"uri": uri},
                           "register": {"name": "reviews-sentiment"}, "serve": {"drift": {"reference_size": 300}}})
    result = run_pipeline(cfg, only=("register",))
    assert result.ran == ["register"]
    registered = json.loads((run / "register" / "registered.json").read_text())
    assert registered == {"name": "reviews-sentiment", "version": "1", "alias": "champion", "source": "model/", "tracking_uri": uri}
    profile = json.loads((run / "register" / "drift_profile.json").read_text())
    assert profile["n"] == 300 and set(profile["histograms"]) == {"length", "chars", "tokens", "cluster", "label"}
    run_pipeline(cfg, only=("register",), force=("register",))
    assert registry.status(uri, "reviews-sentiment")["aliases"] == {"champion": "1", "challenger": "2"}
    # compress/'s passing candidate is what gets registered when there is one
    shutil.copytree(run / "model", run / "compress" / "pruned")
    (run / "compress" / "pruned" / "trainforge_compression.json").write_text('{"format": "hf"}')
    (run / "compress" / "candidate.json").write_text('{"name": "pruned", "path": "compress/pruned"}')
    run_pipeline(cfg, only=("register",), force=("register",))
    assert json.loads((run / "register" / "registered.json").read_text())["source"] == "compress candidate pruned"
    (run / "compress" / "candidate.json").write_text('{"name": "x", "path": "../../elsewhere"}')
    with pytest.raises(UserError, match="not a folder inside the run"):
        run_pipeline(cfg, only=("register",), force=("register",))
    # a registered version carries its drift reference: serving it needs nothing from the run
    state = ServerState(ServeConfig(), ModelSource.parse("models:/reviews-sentiment@challenger", uri, tmp_path / "cache"))
    state.load_initial()
    assert state.router.champion.version == "3" and state.router.champion.drift is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_a_run_to_the_openai_client(classifier_run, tmp_path):
    port = _free_port()
    env = {**os.environ, "TRAINFORGE_API_KEY": "k3y"}
    proc = subprocess.Popen([sys.executable, "-m", "trainforge", "serve", str(classifier_run), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "timeout"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k3y", max_retries=0)
        name = client.models.list().data[0].id
        reply = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "房间很干净"}])
        assert reply.choices[0].message.content == "positive"
        clf = client.post("/classify", body={"input": ["房间很干净", "the lazy dog"]}, cast_to=httpx.Response).json()
        assert [d["label"] for d in clf["data"]] == ["positive", "negative"]
        assert abs(sum(clf["data"][0]["probabilities"].values()) - 1) < 1e-4
        fb = client.post("/feedback", body={"id": reply.id, "label": "positive"}, cast_to=httpx.Response).json()
        assert fb["correct"] is True
    finally:
        proc.terminate()
        proc.wait(30)
    # SIGTERM → graceful shutdown; uvicorn re-raises the signal afterwards, so -15 is a clean exit too
    assert proc.returncode in (0, -15) and "Traceback" not in proc.stdout.read()
