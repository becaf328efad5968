"""Reproducible execution histories for the analytics tests (fixed seeds, no model needed)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from orb_learning.models import ExecutionRecord

REPOS = {"acme/api": 0.55, "acme/web": 0.27, "acme/infra": 0.14, "acme/docs": 0.04}
FREQUENT_REPO, RARE_REPO = "acme/api", "acme/docs"
TIERS = {"haiku": 0.65, "sonnet": 0.75, "opus": 0.85}  # tier -> success probability
TASK_TYPES = ("bugfix", "feature", "refactor", "test")
POOLS = ("cpu-small", "cpu-large", "gpu")
_PAIRS = [
    (v, n)
    for v in ("cache", "retry", "split", "mock")
    for n in ("client", "parser", "query", "config", "worker")
]
COMMON_SUMMARIES = [f"s{i:02d}: {v} the {n}" for i, (v, n) in enumerate(_PAIRS, start=1)]  # 20
RARE_SUMMARIES = {  # summary -> uses
    "s21: pin the version": 1,
    "s22: bump the timeout": 2,
    "s23: add an index": 3,
    "s24: vendor the wheel": 4,
    "s25: revert the change": 1,
}
HISTORY_DAYS = 120
BOUNDARY_DAYS = (1, 7, 30, 45)


def day_start(moment: datetime) -> datetime:
    """Start of the UTC day of an aware UTC datetime."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def hour_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def boundary_times(now: datetime) -> list[datetime]:
    """Instants at, and one microsecond before, the window starts of BOUNDARY_DAYS."""
    times = []
    for days in BOUNDARY_DAYS:
        then = now - timedelta(days=days)
        for start in (day_start(then), hour_start(then)):
            times += [start, start - timedelta(microseconds=1)]
    return times


def execution(rng: random.Random, timestamp: datetime, **overrides: Any) -> ExecutionRecord:
    """One plausible execution at ``timestamp``; ``overrides`` fix any field."""
    fields: dict[str, Any] = {
        "repo": rng.choices(list(REPOS), weights=list(REPOS.values()))[0],
        "model_tier": rng.choice(list(TIERS)),
        "task_type": rng.choices(TASK_TYPES, weights=(4, 3, 2, 1))[0],
        "pool_type": rng.choices(POOLS, weights=(5, 3, 2))[0],
        "solution_summary": None
        if rng.random() < 0.15
        else rng.choices(
            COMMON_SUMMARIES, weights=[1 / (i + 1) for i in range(len(COMMON_SUMMARIES))]
        )[0],
    }
    fields.update(overrides)
    success = overrides.get("success", rng.random() < TIERS[fields["model_tier"]])
    estimate = round(rng.uniform(0.001, 2.5), 4)
    fields = {
        "timestamp": timestamp,
        "task_description": f"{fields['task_type']} in {fields['repo']} #{rng.randrange(10**6)}",
        "routing_confidence": rng.random(),
        "complexity_score": rng.randint(0, 100),
        "success": success,
        "duration_seconds": rng.lognormvariate(3.5, 1.0),
        "quality_score": None if rng.random() < 0.2 else rng.randint(0, 100),
        "cost_estimate": estimate,
        "actual_cost": estimate * rng.uniform(0.3, 2.0),
        "error_message": None if success else "timed out",
        **fields,
    }
    return ExecutionRecord(**fields)


def history(now: datetime, *, n: int = 1000, seed: int = 20260125) -> list[ExecutionRecord]:
    """``n`` executions over HISTORY_DAYS days before ``now`` (aware UTC), including some in
    the current UTC hour and day, some on window boundaries, and rarely used solutions."""
    rng = random.Random(seed)
    this_hour, today = hour_start(now), day_start(now)
    times = boundary_times(now)
    times += [this_hour + (now - this_hour) * rng.random() for _ in range(25)]
    times += [today + (now - today) * rng.random() for _ in range(25)]
    rare = [summary for summary, uses in RARE_SUMMARIES.items() for _ in range(uses)]
    span = timedelta(days=HISTORY_DAYS)
    times += [now - span * rng.random() for _ in range(n - len(times) - len(rare))]
    records = [execution(rng, t) for t in times]
    records += [  # rarely used and always successful: ties on success_rate 1.0
        execution(rng, now - span * rng.random(), solution_summary=s, success=True) for s in rare
    ]
    return records


def unit_vectors(n: int, *, seed: int = 7) -> np.ndarray:
    """``n`` random unit vectors, float32, shape (n, 384): stand-ins for the model's output."""
    vectors = np.random.default_rng(seed).standard_normal((n, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def as_stored(vector: np.ndarray) -> np.ndarray:
    """An embedding as the library stores it (revision 0008): unit length, half precision."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array.astype(np.float64)))
    stored: np.ndarray = (array / norm).astype(np.float16)
    return stored
