"""Shared pieces of the telemetry tests: a small real embedder, a stream of tasks whose
events arrive out of order, and the check that every field sent is the field stored.

(No tests here: the module is named for the files the telemetry tests own.)
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import asyncpg
import numpy as np

from orb_learning import ErrorType, TelemetryCapture
from orb_learning.telemetry import (
    EXECUTION_OUTCOME,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
)


class HashEmbedder:
    """A deterministic 384-d embedder (hash of the text -> unit vector): real vectors the
    schema accepts, without the model's seconds per thousand texts."""

    name = "sha256-384"
    dimension = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            rows[i] = np.random.default_rng(seed).standard_normal(self.dimension)
        unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit


class ModelTier(Enum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


@dataclass
class ModelRouting:
    """The router's routing object (first-version.md 1.6), passed as an object."""

    tier: ModelTier
    model: str
    confidence: float
    complexity_score: int
    routing_reason: str
    expected_cost_savings: float = 0.0
    max_tokens: int = 4096
    cost_per_1k_tokens: float = 0.002


@dataclass
class Task:
    """One task's events and the row they must produce."""

    task_id: uuid.UUID
    events: list[tuple[str, dict[str, Any]]]
    expected: dict[str, Any] = field(default_factory=dict)


BASE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
VERBS = ("fix", "speed up", "document")


def make_task(rng: random.Random, index: int) -> Task:
    """A task in one of the shapes orchestrators send (see the telemetry docstring)."""
    task_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    routed_at = BASE + timedelta(seconds=index)
    started_at = routed_at + timedelta(seconds=1)
    finished_at = started_at + timedelta(seconds=rng.uniform(0.5, 300))
    tokens = rng.randrange(100, 20_000)
    files = [f"src/f{i}.py" for i in range(rng.randrange(0, 6))]
    tier = rng.choice(list(ModelTier))
    task_data = {
        "type": rng.choice(["refactor", "test", "code_review"]),
        "description": f"task {index}: {rng.choice(VERBS)} module {index % 97}",
        "repo": rng.choice(["mahavishnu", "session-buddy", "crackerjack"]),
        "files": files,
        "estimated_tokens": tokens,
        "metadata": {"ticket": f"T-{index}"},
    }
    routing_object = ModelRouting(
        tier=tier,
        model=f"model-{tier.value}",
        confidence=round(rng.random(), 6),
        complexity_score=rng.randrange(0, 101),
        routing_reason="complexity",
    )
    expected: dict[str, Any] = {
        "task_id": task_id,
        "timestamp": routed_at,
        "task_type": task_data["type"],
        "task_description": task_data["description"],
        "repo": task_data["repo"],
        "file_count": len(files),
        "estimated_tokens": tokens,
        "model_tier": tier.value,
        "routing_confidence": routing_object.confidence,
        "complexity_score": routing_object.complexity_score,
        "user_accepted": None,
        "user_rating": None,
    }
    routing: Any
    if index % 2:
        routing = routing_object
        expected["cost_estimate"] = tokens / 1000 * routing_object.cost_per_1k_tokens
        expected["pool_type"] = "pool-a"  # from the pool_id (the routing names no pool)
        expected["swarm_topology"] = None
    else:
        routing = {
            "tier": tier.value,
            "pool": "mahavishnu",
            "confidence": routing_object.confidence,
            "complexity_score": routing_object.complexity_score,
            "estimated_cost": 0.25,
            "swarm_topology": "mesh",
            "model": routing_object.model,
            "routing_reason": "complexity",
        }
        expected.update(cost_estimate=0.25, pool_type="mahavishnu", swarm_topology="mesh")
    routing_event = {"task_id": str(task_id), "routing": routing, "timestamp": routed_at}
    routing_event["task_data"] = task_data
    start = {"pool_id": "pool-a", "task_id": task_id, "timestamp": started_at.isoformat()}
    success = rng.random() < 0.8
    if index % 3 == 0:  # the pool's raw result plus the task_id: no duration given
        outcome_type = POOL_EXECUTION_COMPLETE
        outcome: dict[str, Any] = {
            "task_id": task_id,
            "pool_id": "pool-a",
            "worker_id": f"w-{index % 4}",
            "status": "completed" if success else "failed",
            "output": "done" if success else "",
            "error": None if success else "worker timed out",
            "timestamp": finished_at.timestamp(),
        }
        expected.update(
            success=success,
            duration_seconds=(finished_at - started_at).total_seconds(),
            actual_cost=0.0,
            error_message=None if success else "worker timed out",
            error_type=None if success else ErrorType.TIMEOUT.value,
        )
        meta_ids = {"pool_id": "pool-a", "worker_id": f"w-{index % 4}"}
    else:
        outcome_type = EXECUTION_OUTCOME
        outcome = {
            "task_id": task_id,
            "success": success,
            "duration_seconds": round(rng.uniform(0.1, 600), 3),
            "quality_score": rng.randrange(0, 101),
            "actual_cost": round(rng.uniform(0, 2), 5),
            "error_type": None if success else "validation",
            "error_message": None if success else "schema check failed",
            "pool_id": "pool-a",
            "peak_memory_mb": 256.5,
            "cpu_time_seconds": 3.25,
            "solution_summary": f"pattern {index % 7}",
        }
        expected.update({k: v for k, v in outcome.items() if k not in ("task_id", "pool_id")})
        meta_ids = {"pool_id": "pool-a"}
    if isinstance(routing, dict):
        meta = {"ticket": f"T-{index}", "model": routing["model"], "routing_reason": "complexity"}
    else:
        meta = {"ticket": f"T-{index}", "model": routing.model, "routing_reason": "complexity"}
    expected["metadata"] = {**meta, **meta_ids}
    events = [(ROUTING_DECISION, routing_event), (POOL_EXECUTION_START, start)]
    events.append((outcome_type, outcome))
    return Task(task_id, events, expected)


def make_stream(count: int, *, seed: int = 1) -> list[Task]:
    rng = random.Random(seed)
    return [make_task(rng, i) for i in range(count)]


Send = Callable[[str, dict[str, Any]], Awaitable[None]]


def sender(capture: TelemetryCapture) -> Send:
    """Call the capture method an event type names (``capture_<name>``)."""

    async def send(event_type: str, payload: dict[str, Any]) -> None:
        name = "capture_" + event_type.removeprefix("orb_learning.")
        await getattr(capture, name)(payload)

    return send


async def produce(
    tasks: Sequence[Task], send: Send, *, producers: int = 4, seed: int = 2
) -> list[float]:
    """Send every event from ``producers`` concurrent tasks, in a shuffled global order
    (a task's outcome often before its routing); return each send's duration."""
    events = [event for task in tasks for event in task.events]
    random.Random(seed).shuffle(events)
    durations: list[float] = []

    async def producer(share: list[tuple[str, dict[str, Any]]]) -> None:
        for n, (event_type, payload) in enumerate(share):
            started = time.perf_counter()
            await send(event_type, payload)
            durations.append(time.perf_counter() - started)
            if n % 50 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(producer(events[i::producers]) for i in range(producers)))
    return durations


def check_rows(rows: Sequence[asyncpg.Record], tasks: Sequence[Task]) -> None:
    """Exactly one row per task, and each field equal to what was sent."""
    by_id = {row["task_id"]: row for row in rows}
    assert len(rows) == len(by_id) == len(tasks)
    for task in tasks:
        row = by_id[task.task_id]
        for name, value in task.expected.items():
            stored = row[name]
            if isinstance(value, float):
                assert abs(stored - value) < 1e-6, (name, stored, value)
            else:
                assert stored == value, (task.task_id, name, stored, value)


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
