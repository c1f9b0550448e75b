"""Acceptance gates: each variant passes every budget or is marked failed with its reasons.

The deploy candidate is the passing variant with the highest batch-32 speedup (speed is why one
compresses), ties broken by the higher metric, then the smaller size. No passing variant, no
candidate: the original stays what is registered and served.

Speed is judged at both batch sizes timed: a speedup gate at batch 32 (throughput) and, when set,
at batch 1 (one request at a time, the latency a user of `trainforge serve` feels). Whatever the
gates, `slower_at` names every batch size where the variant is slower than the original, and the
verdict says so: dynamic INT8 can win at 32 and lose at 1 (its per-batch activation quantisation
costs the same whatever the batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainforge.compress.config import GatesConfig


@dataclass
class GateResult:
    name: str
    passed: bool
    metric: float
    metric_drop: float
    speedup_b32: float
    size_mb: float
    reasons: list[str] = field(default_factory=list)
    """snake_case reason with the numbers, one per failed budget."""
    speedup_b1: float | None = None
    """p50 speedup at batch 1 versus the original (None: not measured)."""
    slower_at: list[int] = field(default_factory=list)
    """Batch sizes where the variant is slower than the original (speedup < 1), gate or no gate."""

    @property
    def verdict(self) -> str:
        """One line: pass/fail, the reasons, and where it is slower than the original."""
        text = "pass" if self.passed else "fail: " + "; ".join(self.reasons)
        if self.slower_at:
            text += " — slower than the original at batch " + " and ".join(str(b) for b in self.slower_at)
        return text


def judge(name: str, metric: float, original_metric: float, speedup_b32: float, size_mb: float,
          gates: GatesConfig, speedup_b1: float | None = None) -> GateResult:
    drop = round(original_metric - metric, 5)
    reasons = []
    if drop > gates.max_metric_drop + 1e-12:
        reasons.append(f"metric_drop {drop:.4f} > max_metric_drop {gates.max_metric_drop}")
    if gates.min_speedup_b1 is not None:
        if speedup_b1 is None:
            reasons.append("speedup_b1 not measured < min_speedup_b1")
        elif speedup_b1 < gates.min_speedup_b1:
            reasons.append(f"speedup_b1 {speedup_b1:.2f}x < min_speedup_b1 {gates.min_speedup_b1}x")
    if gates.min_speedup_b32 is not None and speedup_b32 < gates.min_speedup_b32:
        reasons.append(f"speedup_b32 {speedup_b32:.2f}x < min_speedup_b32 {gates.min_speedup_b32}x")
    if gates.max_size_mb is not None and size_mb > gates.max_size_mb:
        reasons.append(f"size_mb {size_mb:.3f} > max_size_mb {gates.max_size_mb}")
    slower = [b for b, sp in ((1, speedup_b1), (32, speedup_b32)) if sp is not None and sp < 1.0]
    return GateResult(name, not reasons, round(metric, 5), drop, round(speedup_b32, 3), round(size_mb, 4), reasons,
                      None if speedup_b1 is None else round(speedup_b1, 3), slower)


def choose_candidate(results: list[GateResult]) -> GateResult | None:
    passing = [r for r in results if r.passed]
    if not passing:
        return None
    return max(passing, key=lambda r: (r.speedup_b32, r.metric, -r.size_mb))
