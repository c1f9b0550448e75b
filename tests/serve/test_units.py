"""Small units: stop-sequence streaming (property test), sampling, the batcher's drain, the gates."""

from __future__ import annotations

import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainforge.serve.batching import Batcher, EngineRetired, GenRequest, _Row, sample_next
from trainforge.serve.config import GatesConfig
from trainforge.serve.rollout import VersionStats, gate_failure


class CharEngine:
    """Token i is chr(i): decoding is exact, so the expected text is easy to state."""

    eos_ids = {0}

    @staticmethod
    def decode(ids):
        return "".join(chr(i) for i in ids)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="abc", min_size=0, max_size=30), stops=st.lists(st.text(alphabet="abc", min_size=1, max_size=3), max_size=3),
       max_tokens=st.integers(1, 40))
def test_streamed_text_is_the_text_before_the_first_stop(text, stops, max_tokens):
    events = []
    req = GenRequest([], max_tokens=max_tokens, stop=stops, emit=events.append)
    row = _Row(req, CharEngine())
    for c in text:
        if row.done:
            break
        row.push(ord(c))
    if not row.done:
        row.finish("length")
    produced, expected = text[:max_tokens], text[:max_tokens]
    for k in range(1, len(produced) + 1):  # after each token: cut at the earliest stop in the text so far
        found = [produced[:k].find(s) for s in stops if s in produced[:k]]
        if found:
            expected = produced[: min(found)]
            break
    streamed = "".join(e[1] for e in events if e[0] == "token")
    assert streamed == expected
    assert events[-1][0] == "done" and [e[0] for e in events].count("done") == 1


def test_top_p_keeps_the_nucleus_and_temperature_zero_is_greedy():
    logits = torch.tensor([0.0, 5.0, 4.9, -3.0])
    gen = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1.0, 0.01, gen) for _ in range(50)} == {1}
    assert {sample_next(logits, 1.0, 0.9, gen) for _ in range(200)} == {1, 2}
    assert sample_next(logits, 0.0, 1.0, gen) == 1


def test_batcher_drains_queued_requests_then_refuses_new_ones():
    seen, release = [], threading.Event()

    def run(batch):
        release.wait(5)
        seen.extend(batch)

    b = Batcher(run, max_batch_size=2, max_wait_ms=1, name="t")
    requests = [GenRequest([i], 1) for i in range(5)]
    for r in requests:
        b.submit(r)
    b.close(wait=False)  # queued requests still run
    release.set()
    b.close(wait=True, timeout=10)
    assert seen == requests
    with pytest.raises(EngineRetired):
        b.submit(GenRequest([5], 1))


def _stats(requests=0, errors=0, latency=0.01, feedback=0, correct=0) -> VersionStats:
    s = VersionStats()
    for i in range(requests):
        s.record(latency, ok=i >= errors)
    s.feedback, s.correct = feedback, correct
    return s


def test_each_gate_fires_alone():
    gates = GatesConfig(min_requests=20, max_error_rate=0.05, p99_latency_ms=500, min_feedback=10, max_accuracy_drop=0.05,
                        fail_on_drift=True)
    champion = _stats(100, feedback=100, correct=90)
    assert gate_failure(_stats(100, feedback=50, correct=45), champion, gates) is None
    assert "error rate" in gate_failure(_stats(100, errors=10), champion, gates)
    assert "p99 latency" in gate_failure(_stats(100, latency=0.8), champion, gates)
    assert "feedback accuracy" in gate_failure(_stats(100, feedback=50, correct=30), champion, gates)
    assert "drifted" in gate_failure(_stats(100), champion, gates, label_drifted=True)
    assert gate_failure(_stats(10, errors=10), champion, gates) is None  # too few requests to judge
