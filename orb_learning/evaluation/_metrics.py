"""Routing metrics on tasks whose outcomes on both tiers are known (RouteLLM's definitions).

A router gives each task a score (here ``expected_success(large) - expected_success(small)``);
sending the tasks with the highest scores to the large tier, a share ``c`` of them, traces
the quality (mean success) against ``c``. Ties are broken at random: the curve is taken at
the ends of each group of equal scores and is straight in between, which is exactly its
expectation over random tie orders (so a constant score gives the diagonal, APGR 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 10


@dataclass(frozen=True)
class Curve:
    """Quality against the share of large calls, at the ends of each tie group."""

    share: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    small_quality: float
    large_quality: float

    def gap_recovered(self) -> np.ndarray:
        """PGR: 0 at always-small, 1 at always-large."""
        gap = self.large_quality - self.small_quality
        if abs(gap) < 1e-12:
            return np.zeros_like(self.quality)
        return np.asarray((self.quality - self.small_quality) / gap, dtype=np.float64)


def curve(
    scores: np.ndarray,
    small: np.ndarray,
    large: np.ndarray,
    small_cost: np.ndarray,
    large_cost: np.ndarray,
) -> Curve:
    """The routing curve of ``scores`` (higher: send to large first)."""
    order = np.argsort(-scores, kind="stable")
    gain = (large - small)[order].astype(np.float64)
    extra = (large_cost - small_cost)[order].astype(np.float64)
    sorted_scores = scores[order]
    ends = np.flatnonzero(np.diff(sorted_scores) != 0) + 1  # after each tie group
    cuts = np.concatenate(([0], ends, [len(scores)]))
    n = len(scores)
    base_quality, base_cost = float(small.mean()), float(small_cost.sum())
    gains = np.concatenate(([0.0], np.cumsum(gain)))[cuts]
    extras = np.concatenate(([0.0], np.cumsum(extra)))[cuts]
    return Curve(
        share=cuts / n,
        quality=base_quality + gains / n,
        cost=(base_cost + extras) / n,
        small_quality=base_quality,
        large_quality=float(large.mean()),
    )


def apgr(routing: Curve) -> float:
    """The area under PGR against the share of large calls (trapezoids)."""
    pgr = routing.gap_recovered()
    return float(np.sum((pgr[1:] + pgr[:-1]) / 2 * np.diff(routing.share)))


def calls_to_recover(routing: Curve, fraction: float) -> float:
    """CPT: the smallest share of large calls whose PGR reaches ``fraction``
    (interpolated; 1.0 when it never does)."""
    pgr = routing.gap_recovered()
    above = np.flatnonzero(pgr >= fraction - 1e-12)
    if len(above) == 0:
        return 1.0
    i = int(above[0])
    if i == 0:
        return 0.0
    x0, x1, y0, y1 = routing.share[i - 1], routing.share[i], pgr[i - 1], pgr[i]
    return float(x0 + (fraction - y0) / (y1 - y0) * (x1 - x0)) if y1 != y0 else float(x1)


def cost_at_quality(routing: Curve, quality: float) -> float | None:
    """The cost per task (USD) at the first point whose quality reaches ``quality``
    (interpolated), None when the curve never gets there."""
    above = np.flatnonzero(routing.quality >= quality - 1e-12)
    if len(above) == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(routing.cost[0])
    q0, q1 = routing.quality[i - 1], routing.quality[i]
    c0, c1 = routing.cost[i - 1], routing.cost[i]
    t = (quality - q0) / (q1 - q0) if q1 != q0 else 1.0
    return float(c0 + t * (c1 - c0))


def expected_calibration_error(predicted: np.ndarray, outcome: np.ndarray) -> float:
    """ECE over :data:`ECE_BINS` equal-width bins: the mean |rate - mean prediction|,
    weighted by the bins' sizes."""
    bins = np.minimum((predicted * ECE_BINS).astype(int), ECE_BINS - 1)
    error = 0.0
    for b in range(ECE_BINS):
        inside = bins == b
        if inside.any():
            error += inside.mean() * abs(outcome[inside].mean() - predicted[inside].mean())
    return float(error)


def brier(predicted: np.ndarray, outcome: np.ndarray) -> float:
    return float(np.mean((predicted - outcome) ** 2))
