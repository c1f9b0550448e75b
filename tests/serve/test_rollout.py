"""Registry and rollout under load: a planted bad challenger is rolled back by the feedback gate
with zero failed requests; a champion rollback mid-load hot-swaps without losing a request; the
transitions and their reasons show in `deploy status`; shutdown drains in-flight requests."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.serve.tiny_models import RULE_TEXTS, rule_label

from trainforge.serve import registry
from trainforge.serve.config import CanaryConfig, DriftConfig, GatesConfig, ServeConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory, classifier_dir, flipped_classifier_dir):
    """An MLflow store with v1 = a good classifier (champion) and v2 = the same one with its output
    rows swapped (challenger): it answers fast and without errors, only wrongly."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    import mlflow

    exp = mlflow.MlflowClient(uri).create_experiment("trainforge", artifact_location=str(root / "artifacts"))
    assert exp
    assert registry.register_dir(uri, "reviews", classifier_dir, "champion", "first model") == "1"
    assert registry.register_dir(uri, "reviews", flipped_classifier_dir, "challenger", "planted bad challenger") == "2"
    return uri, root


class Load:
    """Clients on threads: classify a text, then report its true label, until stopped."""

    def __init__(self, url: str, workers: int = 16, max_requests: int = 20_000):
        # runs until stop(); the cap only bounds a test gone wrong (phases take seconds, not this many requests)
        self.url, self.statuses, self.versions = url, [], []
        self._stop = threading.Event()
        self._left = max_requests
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(workers)
        self.futures = [self.pool.submit(self._client, seed) for seed in range(workers)]

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=60) as c:
            while not self._stop.is_set():
                with self._lock:
                    if self._left <= 0:
                        return
                    self._left -= 1
                text = rng.choice(RULE_TEXTS)
                r = c.post(f"{self.url}/v1/classify", json={"input": text})
                self.statuses.append(r.status_code)
                if r.status_code != 200:
                    continue
                body = r.json()
                self.versions.append(body["model_version"])
                f = c.post(f"{self.url}/v1/feedback", json={"id": body["id"], "label": rule_label(text)})
                self.statuses.append(f.status_code)

    def wait_until(self, condition, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(f.done() for f in self.futures):
            if condition():
                return True
            time.sleep(0.05)
        return condition()

    def stop(self) -> None:
        self._stop.set()
        for f in self.futures:
            f.result()
        self.pool.shutdown()


def test_bad_challenger_rolled_back_under_load_then_champion_rollback(store, classifier_dir, capsys, tmp_path):
    from tests.serve.servers import start_server

    from trainforge.cli import main

    uri, root = store
    gates = GatesConfig(min_requests=20, min_feedback=15, max_accuracy_drop=0.2, p99_latency_ms=60_000)
    cfg = ServeConfig(drift=DriftConfig(enabled=False), canary=CanaryConfig(share=0.3, poll_seconds=0.2, gates=gates))
    server, state = start_server("models:/reviews", cfg, tracking_uri=uri, cache=tmp_path / "cache")
    try:
        assert (state.router.champion.version, state.router.challenger.version) == ("1", "2")
        load = Load(server.url)
        assert load.wait_until(lambda: state.router.challenger is None), "the gate never fired"
        served_after = len(load.versions)
        assert load.wait_until(lambda: len(load.versions) > served_after + 100)
        # phase 2: promote a new champion and roll it back while the load runs
        assert registry.register_dir(uri, "reviews", classifier_dir, None, "a retrain") == "3"
        assert main(["deploy", "promote", "reviews", "--version", "3", "--tracking-uri", uri, "--reason", "retrained"]) == 0
        assert load.wait_until(lambda: state.router.champion.version == "3")
        assert main(["deploy", "rollback", "reviews", "--tracking-uri", uri, "--reason", "bad retrain"]) == 0
        assert load.wait_until(lambda: state.router.champion.version == "1")
        swapped_back = len(load.versions)
        assert load.wait_until(lambda: len(load.versions) > swapped_back + 50)
        load.stop()
    finally:
        server.stop()

    assert load.statuses and set(load.statuses) == {200}, "a request failed during rollout"
    assert "2" in load.versions[:served_after] and "2" not in load.versions[served_after + 32 :]
    assert "3" in load.versions and load.versions[-1] == "1"
    status = registry.status(uri, "reviews")
    assert status["aliases"] == {"champion": "1"}
    gate = next(t for t in status["transitions"] if t["action"] == "rollback-challenger")
    assert gate["by"] == "canary-gate" and "feedback accuracy" in gate["reason"] and gate["from"] == "2"
    assert [v["rolled_back"] is not None for v in status["versions"]] == [False, True, True]
    assert main(["deploy", "status", "reviews", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().err
    assert "canary-gate" in out and "bad retrain" in out and "retrained" in out


def test_registry_errors_are_user_errors(store):
    from trainforge.errors import UserError

    uri, _ = store
    with pytest.raises(UserError, match="no registered model"):
        registry.status(uri, "nope")
    with pytest.raises(UserError):
        registry.parse_models_uri("models:/")


def test_shutdown_drains_in_flight_requests(llama_dir):
    from tests.serve.servers import start_server

    server, state = start_server(str(llama_dir))
    state.router.champion.engine.eos_ids = set()  # decode all 400 tokens: long enough to be caught mid-way
    results = []

    def slow_request():
        r = httpx.post(f"{server.url}/v1/completions", json={"prompt": "hi", "max_tokens": 400}, timeout=60)
        results.append((r, time.monotonic()))

    t = threading.Thread(target=slow_request)
    t.start()
    deadline = time.monotonic() + 30
    while state.router.champion.batcher.running == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    stop_called = time.monotonic()
    server.stop()
    t.join()
    response, answered = results[0]
    assert answered > stop_called, "the request finished before shutdown began: nothing was drained"
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 400
