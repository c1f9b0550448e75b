"""Champion/challenger routing, live statistics per version, and the canary gates.

    request ──▶ Router.pick() ── share ──▶ challenger   (gates watch its live signals)
                                 └─ rest ─▶ champion

A gate that fails drops the challenger from routing at once (new requests go to the champion),
lets the challenger's queued and running requests finish on its own batcher (nothing in flight
fails), and asks the registry to move the alias back, with the gate's reason logged.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from trainforge.serve.config import GatesConfig


@dataclass
class VersionStats:
    """Live signals of one model version."""

    requests: int = 0
    errors: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=2000))
    feedback: int = 0
    correct: int = 0

    def record(self, seconds: float, ok: bool) -> None:
        self.requests += 1
        self.errors += 0 if ok else 1
        self.latencies.append(seconds)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.feedback if self.feedback else None


@dataclass
class ServedModel:
    """One loaded model version with its own batcher, drift window and statistics."""

    name: str
    version: str
    role: str
    """champion, challenger, or model (a plain directory)."""
    engine: object
    batcher: object
    drift: object | None = None
    stats: VersionStats = field(default_factory=VersionStats)


def gate_failure(challenger: VersionStats, champion: VersionStats, gates: GatesConfig,
                 label_drifted: bool = False) -> str | None:
    """The first gate the challenger breaks, as a reason a person reads; None while it holds."""
    if challenger.requests >= gates.min_requests:
        if challenger.error_rate > gates.max_error_rate:
            return f"error rate {challenger.error_rate:.1%} over max_error_rate {gates.max_error_rate:.1%} ({challenger.requests} requests)"
        if challenger.p99_ms > gates.p99_latency_ms:
            return f"p99 latency {challenger.p99_ms:.0f} ms over the {gates.p99_latency_ms:.0f} ms objective ({challenger.requests} requests)"
    if challenger.feedback >= gates.min_feedback and champion.feedback >= gates.min_feedback:
        drop = champion.accuracy - challenger.accuracy
        if drop > gates.max_accuracy_drop:
            return (f"feedback accuracy {challenger.accuracy:.3f} trails the champion's {champion.accuracy:.3f} by "
                    f"{drop:.3f} > max_accuracy_drop {gates.max_accuracy_drop} ({challenger.feedback} labelled outcomes)")
    if gates.fail_on_drift and label_drifted:
        return "the challenger's predicted-label distribution drifted from the reference"
    return None


class Router:
    """Which loaded version answers the next request."""

    def __init__(self, champion: ServedModel, challenger: ServedModel | None = None, share: float = 0.0, seed: int = 0):
        self.champion, self.challenger, self.share = champion, challenger, share
        self._rng = random.Random(seed)
        self.rejected: set[str] = set()
        """Versions a gate rolled back: never routed to again by this server."""

    def pick(self) -> ServedModel:
        challenger = self.challenger
        if challenger is not None and self._rng.random() < self.share:
            return challenger
        return self.champion

    def served(self) -> list[ServedModel]:
        return [m for m in (self.champion, self.challenger) if m is not None]

    def by_version(self, version: str) -> ServedModel | None:
        return next((m for m in self.served() if m.version == version), None)

    def swap(self, role: str, new: ServedModel | None) -> ServedModel | None:
        """Route `role` to `new` from the next request on; the old version drains in the background."""
        old = getattr(self, role)
        setattr(self, role, new)
        if old is not None and old is not new:
            old.batcher.close(wait=False)  # queued requests still run; new submits get EngineRetired → re-pick
        return old
