"""The telemetry benchmark's input: a stream of realistic orchestrator events.

(Nothing here is imported from the tests.)
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

# What a caller does, by label: the capture method, or a baseline measured beside it.
CAPTURE_KINDS = {
    "routing (mapping)": "capture_routing_decision",
    "routing (object, Enum tier)": "capture_routing_decision",
    "pool start": "capture_pool_execution_start",
    "outcome (execution_outcome)": "capture_execution_outcome",
    "outcome (pool result)": "capture_pool_execution_complete",
}
BASELINE_KINDS = (
    "clock pair alone",
    "await trivial coroutine",
    "ExecutionRecord(**fields)",
    "os.write of a 400-byte line",
)
JOURNAL_LINE = b'{"q":1,"e":"orb_learning.pool_execution_start","r":1.0,"d":' + b"0" * 338 + b"}\n"
"""What the last baseline writes: a line of the journal's size (a typical event's)."""


class ModelTier(Enum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


@dataclass
class ModelRouting:
    """The router's routing object, passed as an object (its tier an Enum)."""

    tier: ModelTier
    model: str
    confidence: float
    complexity_score: int
    routing_reason: str
    cost_per_1k_tokens: float = 0.003


@dataclass
class Task:
    events: list[tuple[str, dict[str, Any]]]
    description: str
    record_fields: dict[str, Any] = field(default_factory=dict)


VERBS = ("Refactor", "Speed up", "Fix a race in", "Add tests for", "Document", "Harden")
PARTS = (
    "the session cache",
    "the query planner",
    "the retry loop",
    "the auth middleware",
    "the worker pool",
    "the config loader",
    "the webhook handler",
    "the export job",
)
GOALS = (
    "it stops leaking connections under load",
    "timeouts are retried with backoff",
    "the tests can run in parallel",
    "errors carry the failing task id",
    "memory stays flat on large inputs",
    "the public API keeps its signatures",
)
REPOS = ("mahavishnu", "session-buddy", "crackerjack", "acb", "fastblocks")
BASE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def make_task(rng: random.Random, index: int) -> Task:
    """One task's three events: the routing decision (a mapping for even tasks, an object
    with an Enum tier for odd ones), the pool start, and the outcome (a pool's raw result
    for every third task, else an execution outcome)."""
    task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    repo = rng.choice(REPOS)
    description = (
        f"{rng.choice(VERBS)} {rng.choice(PARTS)} in {repo} module {index % 97} so that "
        f"{rng.choice(GOALS)}; keep the behaviour covered by tests (task {index})"
    )
    files = [f"src/{repo}/m{rng.randrange(50)}.py" for _ in range(rng.randrange(1, 6))]
    tokens = rng.randrange(500, 20_000)
    tier = rng.choice(list(ModelTier))
    routed = BASE + timedelta(seconds=index)
    task_data = {
        "type": rng.choice(["refactor", "test", "code_review", "bugfix"]),
        "description": description,
        "repo": repo,
        "files": files,
        "estimated_tokens": tokens,
        "metadata": {"ticket": f"ORB-{index}"},
    }
    confidence, complexity = round(rng.random(), 4), rng.randrange(0, 101)
    routing: Any
    if index % 2:
        kind = "routing (object, Enum tier)"
        routing = ModelRouting(tier, f"model-{tier.value}", confidence, complexity, "complexity")
    else:
        kind = "routing (mapping)"
        routing = {
            "tier": tier.value,
            "model": f"model-{tier.value}",
            "confidence": confidence,
            "complexity_score": complexity,
            "cost_per_1k_tokens": 0.003,
            "pool": "mahavishnu",
            "routing_reason": "complexity",
        }
    events = [
        (
            kind,
            {"task_id": task_id, "routing": routing, "timestamp": routed, "task_data": task_data},
        )
    ]
    events.append(
        (
            "pool start",
            {
                "task_id": task_id,
                "pool_id": f"pool-{index % 3}",
                "timestamp": routed + timedelta(seconds=1),
            },
        )
    )
    success = rng.random() < 0.85
    duration = round(rng.uniform(1.0, 300.0), 3)
    if index % 3 == 0:
        events.append(
            (
                "outcome (pool result)",
                {
                    "task_id": task_id,
                    "pool_id": f"pool-{index % 3}",
                    "worker_id": f"w-{index % 8}",
                    "status": "completed" if success else "failed",
                    "output": "patch applied",
                    "error": None if success else "worker timed out",
                    "duration": duration,
                },
            )
        )
    else:
        events.append(
            (
                "outcome (execution_outcome)",
                {
                    "task_id": task_id,
                    "success": success,
                    "duration_seconds": duration,
                    "quality_score": rng.randrange(40, 101),
                    "actual_cost": round(rng.uniform(0, 2), 5),
                    "error_message": None if success else "schema validation failed",
                    "pool_id": f"pool-{index % 3}",
                    "peak_memory_mb": 256.5,
                    "cpu_time_seconds": 3.25,
                    "solution_summary": f"pattern {index % 7}",
                },
            )
        )
    fields = {
        "task_id": uuid.UUID(task_id),
        "timestamp": routed,
        "task_type": task_data["type"],
        "task_description": description,
        "repo": repo,
        "file_count": len(files),
        "estimated_tokens": tokens,
        "model_tier": tier.value,
        "pool_type": "mahavishnu",
        "routing_confidence": confidence,
        "complexity_score": complexity,
        "success": success,
        "duration_seconds": duration,
        "cost_estimate": tokens / 1000 * 0.003,
        "actual_cost": 0.0,
        "metadata": {"ticket": f"ORB-{index}", "model": f"model-{tier.value}"},
    }
    return Task(events, description, fields)


def make_tasks(count: int, seed: int) -> list[Task]:
    rng = random.Random(seed)
    return [make_task(rng, i) for i in range(count)]


def shares(tasks: Sequence[Task], producers: int) -> list[list[tuple[str, Any]]]:
    """Each producer's calls: its tasks' events (every fifth task's outcome before its
    routing decision, as a bus may deliver them), then one of each baseline per task."""
    out: list[list[tuple[str, Any]]] = [[] for _ in range(producers)]
    for index, task in enumerate(tasks):
        share = out[index % producers]
        routing, start, outcome = task.events
        share += [outcome, routing, start] if index % 5 == 4 else [routing, start, outcome]
        share += [
            (BASELINE_KINDS[0], None),
            (BASELINE_KINDS[1], None),
            (BASELINE_KINDS[2], task.record_fields),
            (BASELINE_KINDS[3], None),
        ]
    return out
