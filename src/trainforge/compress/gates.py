"""Acceptance gates: each variant passes every budget or is marked failed with its reasons.

The deploy candidate is the passing variant with the highest batch-32 speedup (speed is why one
compresses), ties broken by the higher metric, then the smaller size. No passing variant, no
candidate: the original stays what is registered and served.
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


def judge(name: str, metric: float, original_metric: float, speedup_b32: float, size_mb: float,
          gates: GatesConfig) -> GateResult:
    drop = round(original_metric - metric, 5)
    reasons = []
    if drop > gates.max_metric_drop + 1e-12:
        reasons.append(f"metric_drop {drop:.4f} > max_metric_drop {gates.max_metric_drop}")
    if gates.min_speedup_b32 is not None and speedup_b32 < gates.min_speedup_b32:
        reasons.append(f"speedup_b32 {speedup_b32:.2f}x < min_speedup_b32 {gates.min_speedup_b32}x")
    if gates.max_size_mb is not None and size_mb > gates.max_size_mb:
        reasons.append(f"size_mb {size_mb:.3f} > max_size_mb {gates.max_size_mb}")
    return GateResult(name, not reasons, round(metric, 5), drop, round(speedup_b32, 3), round(size_mb, 4), reasons)


def choose_candidate(results: list[GateResult]) -> GateResult | None:
    passing = [r for r in results if r.passed]
    if not passing:
        return None
    return max(passing, key=lambda r: (r.speedup_b32, r.metric, -r.size_mb))
