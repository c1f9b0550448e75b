"""Drift: the math against scipy, quiet on fresh reviews, loud on news (same script, other domain),
live through the server's window and offline through `trainforge monitor drift`."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from trainforge.serve.config import DriftConfig
from trainforge.serve.drift import DriftWindow, build_profile, compare_texts, divergences

CFG = DriftConfig(window=300, min_samples=200, check_every=50, clusters=6)


def test_divergences_match_scipy():
    from scipy.stats import entropy

    live, ref = np.array([5.0, 0, 3, 12]), np.array([40.0, 10, 30, 20])
    psi, kl = divergences(live, ref, smoothing=0.5)
    p, q = (live + 0.5) / (live.sum() + 2), (ref + 0.5) / (ref.sum() + 2)
    assert kl == pytest.approx(entropy(p, q))
    assert psi == pytest.approx(entropy(p, q) + entropy(q, p))  # PSI is the symmetrised KL
    assert divergences(ref, ref, 0.5) == (0.0, 0.0)


@pytest.fixture(scope="module")
def tokenize(llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_dir)  # a byte-level BPE: any text has tokens
    return lambda texts: tok(texts, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def profile(review_texts, tokenize):
    return build_profile(review_texts[:1000], None, CFG, seed=0, tokenize=tokenize)


def test_fresh_sample_is_quiet_shifted_sample_fires(profile, review_texts, news_texts, tokenize):
    fresh = compare_texts(profile, review_texts[2000:2300], None, CFG, tokenize)
    assert fresh["drifted"] == [] and "tokens" in fresh["features"], fresh
    shifted = compare_texts(profile, news_texts[:300], None, CFG, tokenize)
    assert {"length", "chars", "tokens", "cluster"} <= set(shifted["drifted"]), shifted
    for feature in ("length", "chars", "tokens", "cluster"):
        assert shifted["features"][feature]["psi"] > 3 * fresh["features"][feature]["psi"]


def test_window_slides_back_to_quiet(profile, review_texts, news_texts):
    window = DriftWindow(profile, CFG)
    verdicts = [window.observe(t) for t in review_texts[3000:3300]]
    assert not any(f["drifted"] for v in verdicts if v for f in v.values())
    verdicts = [window.observe(t) for t in news_texts[:300]]
    assert window.last["chars"]["drifted"] and len(window) == CFG.window
    for t in review_texts[4000:4300]:  # the news slides out of the window
        window.observe(t)
    assert not any(f["drifted"] for f in window.last.values())


def test_live_drift_metrics_and_events(classifier_run, review_texts, news_texts, tmp_path):
    from tests.serve.servers import start_server

    from trainforge.serve.config import ServeConfig

    server, state = start_server(str(classifier_run), ServeConfig(drift=CFG.model_copy(update={"reference_size": 600})))
    state.events_file = tmp_path / "events.jsonl"
    try:
        url = server.url
        with httpx.Client(timeout=30) as c:
            for i in range(0, 200, 20):
                r = c.post(f"{url}/v1/classify", json={"input": review_texts[5000 + i : 5020 + i]})
                assert r.status_code == 200, r.text
            metrics = c.get(f"{url}/metrics").text
            assert 'trainforge:drift_detected{feature="chars"' in metrics
            assert not [line for line in metrics.splitlines() if line.startswith("trainforge:drift_detected") and line.endswith(" 1.0")]
            for i in range(0, 300, 20):
                c.post(f"{url}/v1/classify", json={"input": news_texts[i : i + 20]})
            metrics = c.get(f"{url}/metrics").text
        fired = [line for line in metrics.splitlines() if line.startswith("trainforge:drift_detected") and line.endswith(" 1.0")]
        assert any('feature="chars"' in line for line in fired), metrics
        events = [json.loads(line) for line in state.events_file.read_text().splitlines()]
        assert {e["feature"] for e in events if e["event"] == "drift_detected"} >= {"chars"}
    finally:
        server.stop()


def test_monitor_drift_cli_and_report(classifier_run, review_texts, news_texts, tmp_path, capsys):
    from trainforge.cli import main
    from trainforge.serve.monitor import drift_section

    current = tmp_path / "live.jsonl"
    current.write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in news_texts[:300]), encoding="utf-8")
    assert main(["monitor", "drift", "--reference", str(classifier_run), "--current", str(current)]) == 0
    report = json.loads((classifier_run / "monitor" / "drift.json").read_text())
    assert "chars" in report["drifted"] and "drift in" in capsys.readouterr().err
    assert "Drift monitor" in drift_section(classifier_run)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": 1}\n')
    assert main(["monitor", "drift", "--reference", str(classifier_run), "--current", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
