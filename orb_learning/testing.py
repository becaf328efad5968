"""Aids for testing code that uses orb-learning: a deterministic embedder, the router's
routing object, and a stream of orchestrator events with the rows they must produce.

The library's own tests and benchmark use them too, so they stay honest: the events take
every shape the telemetry accepts (routing as a mapping or as an object with an Enum tier,
an execution outcome or a pool's raw result, durations given or derived from the pool
start), and each task carries the exact row its events make.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from .models import ErrorType
from .telemetry.bus import (
    EXECUTION_OUTCOME,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HashEmbedder", "ModelRouting", "ModelTier", "Task", "make_stream", "make_task"]


class HashEmbedder:
    """A deterministic 384-d :class:`~orb_learning.Embedder` (a hash of the text seeds a
    unit vector): vectors the schema accepts, without the model's seconds per thousand
    texts. Equal texts get equal vectors; any two others are unrelated (cosine near 0)."""

    name = "sha256-384"
    dimension = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        rows = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            rows[i] = np.random.default_rng(seed).standard_normal(self.dimension)
        unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit


class ModelTier(Enum):
    """The router's tiers, an Enum as the first version's router has them."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


@dataclass
class ModelRouting:
    """The router's routing object (the first version's ``ModelRouting``), passed to
    ``capture_routing_decision`` as an object rather than a mapping."""

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
    """One task's events, in the order an orchestrator emits them, and the row they make."""

    task_id: uuid.UUID
    events: list[tuple[str, dict[str, Any]]]
    expected: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """A label per event (for timing each shape apart)."""
        labels = []
        for event_type, payload in self.events:
            if event_type == ROUTING_DECISION:
                mapping = isinstance(payload["routing"], dict)
                labels.append("routing (mapping)" if mapping else "routing (object, Enum tier)")
            elif event_type == POOL_EXECUTION_START:
                labels.append("pool start")
            elif event_type == POOL_EXECUTION_COMPLETE:
                labels.append("outcome (pool result)")
            else:
                labels.append("outcome (execution_outcome)")
        return labels


BASE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
_VERBS = ("Refactor", "Speed up", "Fix a race in", "Add tests for", "Document", "Harden")
_PARTS = ("the session cache", "the query planner", "the retry loop", "the auth middleware",
          "the worker pool", "the config loader", "the webhook handler",
          "the export job")  # fmt: skip
_GOALS = ("it stops leaking connections under load", "timeouts are retried with backoff",
          "the tests can run in parallel", "errors carry the failing task id",
          "memory stays flat on large inputs", "the public API keeps its signatures")  # fmt: skip
_REPOS = ("mahavishnu", "session-buddy", "crackerjack")


def make_task(rng: random.Random, index: int, *, base: datetime = BASE) -> Task:
    """A task in one of the shapes orchestrators send (see :mod:`orb_learning.telemetry`):
    routing as an object for odd tasks, a mapping for even ones; every third outcome a
    pool's raw result whose duration comes from the pool start."""
    task_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    routed_at = base + timedelta(seconds=index)
    started_at = routed_at + timedelta(seconds=1)
    finished_at = started_at + timedelta(seconds=rng.uniform(0.5, 300))
    tokens = rng.randrange(100, 20_000)
    repo = rng.choice(_REPOS)
    files = [f"src/{repo}/m{i}.py" for i in range(rng.randrange(0, 6))]
    tier = rng.choice(list(ModelTier))
    task_data = {
        "type": rng.choice(["refactor", "test", "code_review"]),
        "description": f"{rng.choice(_VERBS)} {rng.choice(_PARTS)} in {repo} module "
        f"{index % 97} so that {rng.choice(_GOALS)} (task {index})",
        "repo": repo,
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
        "task_id": task_id, "timestamp": routed_at, "task_type": task_data["type"],
        "task_description": task_data["description"], "repo": repo, "file_count": len(files),
        "estimated_tokens": tokens, "model_tier": tier.value,
        "routing_confidence": routing_object.confidence,
        "complexity_score": routing_object.complexity_score,
        "user_accepted": None, "user_rating": None,
    }  # fmt: skip
    routing, fields = _routing(index, routing_object, tokens)
    expected.update(fields)
    routing_event = {"task_id": str(task_id), "routing": routing, "timestamp": routed_at}
    routing_event["task_data"] = task_data
    start = {"pool_id": "pool-a", "task_id": task_id, "timestamp": started_at.isoformat()}
    outcome_type, outcome, fields, ids = _outcome(rng, index, task_id, started_at, finished_at)
    expected.update(fields)
    model = routing["model"] if isinstance(routing, dict) else routing.model
    expected["metadata"] = {"ticket": f"T-{index}", "model": model,
                            "routing_reason": "complexity", **ids}  # fmt: skip
    events = [(ROUTING_DECISION, routing_event), (POOL_EXECUTION_START, start)]
    events.append((outcome_type, outcome))
    return Task(task_id, events, expected)


def _routing(index: int, routing: ModelRouting, tokens: int) -> tuple[Any, dict[str, Any]]:
    """The routing as sent (the object, or a mapping) and the fields it fixes."""
    if index % 2:
        return routing, {
            "cost_estimate": tokens / 1000 * routing.cost_per_1k_tokens,
            "pool_type": "pool-a",  # from the pool_id: the routing names no pool
            "swarm_topology": None,
        }
    mapping = {
        "tier": routing.tier.value, "pool": "mahavishnu", "confidence": routing.confidence,
        "complexity_score": routing.complexity_score, "estimated_cost": 0.25,
        "swarm_topology": "mesh", "model": routing.model, "routing_reason": "complexity",
    }  # fmt: skip
    return mapping, {"cost_estimate": 0.25, "pool_type": "mahavishnu", "swarm_topology": "mesh"}


def _outcome(
    rng: random.Random, index: int, task_id: uuid.UUID, started: datetime, finished: datetime
) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, str]]:
    """The outcome event, the fields it fixes and the ids it adds to the metadata."""
    success = rng.random() < 0.8
    if index % 3 == 0:  # the pool's raw result plus the task_id: no duration given
        error = None if success else "worker timed out"
        worker = f"w-{index % 4}"
        raw: dict[str, Any] = {
            "task_id": task_id, "pool_id": "pool-a", "worker_id": worker,
            "status": "completed" if success else "failed", "output": "done" if success else "",
            "error": error, "timestamp": finished.timestamp(),
        }  # fmt: skip
        fields: dict[str, Any] = {
            "success": success, "duration_seconds": (finished - started).total_seconds(),
            "actual_cost": 0.0, "error_message": error,
            "error_type": None if success else ErrorType.TIMEOUT.value,
        }  # fmt: skip
        return POOL_EXECUTION_COMPLETE, raw, fields, {"pool_id": "pool-a", "worker_id": worker}
    outcome: dict[str, Any] = {
        "task_id": task_id, "success": success,
        "duration_seconds": round(rng.uniform(0.1, 600), 3),
        "quality_score": rng.randrange(0, 101), "actual_cost": round(rng.uniform(0, 2), 5),
        "error_type": None if success else "validation",
        "error_message": None if success else "schema check failed", "pool_id": "pool-a",
        "peak_memory_mb": 256.5, "cpu_time_seconds": 3.25,
        "solution_summary": f"pattern {index % 7}",
    }  # fmt: skip
    fields = {k: v for k, v in outcome.items() if k not in ("task_id", "pool_id")}
    return EXECUTION_OUTCOME, outcome, fields, {"pool_id": "pool-a"}


def make_stream(count: int, *, seed: int = 1, base: datetime = BASE) -> list[Task]:
    """``count`` tasks, reproducible for a ``seed``, one second apart from ``base``."""
    rng = random.Random(seed)
    return [make_task(rng, i, base=base) for i in range(count)]
