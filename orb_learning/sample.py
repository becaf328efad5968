"""Realistic sample executions, for the demo and the benchmarks.

Varied descriptions (so that real embeddings spread out), several repos with skewed
frequencies, task types, tiers, pools and solution patterns, over a year of timestamps.
Deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta

from .models import ErrorType, ExecutionRecord

TASK_IDS = uuid.UUID("6f1c2a4e-8d0b-5e7a-9c3f-2b1d4e6a8c0f")
"""The namespace of the sample's task ids (uuid5 of seed and position)."""
REPOS = ("mahavishnu", "session-buddy", "crackerjack", "akosha", "oneiric", "fastblocks")
REPO_WEIGHTS = (40, 20, 15, 12, 8, 5)
TIERS = {"small": (0.002, 0.72), "medium": (0.012, 0.83), "large": (0.06, 0.9)}
POOLS = ("mahavishnu", "session-buddy", "runpod", "local")
TOPOLOGIES = (None, None, None, "star", "mesh", "hierarchical")

COMPONENTS = (
    "database query layer",
    "authentication middleware",
    "payment service",
    "CSS navbar",
    "REST API client",
    "message bus",
    "worker pool scheduler",
    "CLI argument parser",
    "caching layer",
    "logging setup",
    "GraphQL resolvers",
    "background job queue",
    "file upload handler",
    "search index",
    "configuration loader",
    "websocket server",
)
TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "refactor": (
        (
            "Refactor the {c} to remove duplicated code",
            "Split the {c} into smaller modules",
            "Replace callbacks with async/await in the {c}",
        ),
        (
            "Extract shared helpers into a module",
            "Introduce a strategy interface",
            "Move side effects behind a facade",
        ),
    ),
    "optimize": (
        (
            "Optimize slow queries in the {c}",
            "Reduce memory use of the {c}",
            "Speed up the {c} under load",
        ),
        ("Add a composite index", "Batch the round trips", "Cache hot results with a TTL"),
    ),
    "test": (
        (
            "Write unit tests for the {c}",
            "Add integration tests covering the {c}",
            "Increase test coverage of the {c}",
        ),
        (
            "Property-based tests with hypothesis",
            "Fixtures against a real database",
            "Table-driven test cases",
        ),
    ),
    "bugfix": (
        (
            "Fix a race condition in the {c}",
            "Fix the crash when the {c} gets empty input",
            "Fix wrong timezone handling in the {c}",
        ),
        (
            "Guard the shared state with a lock",
            "Validate input at the boundary",
            "Store timestamps as UTC instants",
        ),
    ),
    "code_review": (
        ("Review the pull request changing the {c}", "Review error handling in the {c}"),
        ("Request smaller focused commits", "Point out missing tests"),
    ),
    "docs": (
        ("Document the public API of the {c}", "Write a migration guide for the {c}"),
        ("Generate reference docs from docstrings", "Add runnable examples"),
    ),
    "feature": (
        (
            "Add pagination to the {c}",
            "Add retries with backoff to the {c}",
            "Support configuration from environment variables in the {c}",
        ),
        ("Cursor-based pagination", "Exponential backoff with jitter", "Typed settings object"),
    ),
    "security": (
        ("Audit the {c} for injection risks", "Rotate secrets used by the {c}"),
        ("Parameterise every SQL statement", "Load secrets from the vault at start"),
    ),
}


def generate(count: int, *, seed: int = 42, now: datetime | None = None) -> list[ExecutionRecord]:
    """``count`` executions spread over the year before ``now`` (default: now, UTC).

    The task ids follow from the seed and the position, so storing the same sample twice
    updates it (the demo run again shows the same rows, not twice as many)."""
    rng = random.Random(seed)
    end = now or datetime.now(UTC)
    return [_one(rng, end, uuid.uuid5(TASK_IDS, f"{seed}/{i}")) for i in range(count)]


def _one(rng: random.Random, end: datetime, task_id: uuid.UUID) -> ExecutionRecord:
    task_type = rng.choice(tuple(TASKS))
    descriptions, solutions = TASKS[task_type]
    tier = rng.choices(tuple(TIERS), weights=(5, 3, 2))[0]
    unit_cost, success_rate = TIERS[tier]
    complexity = rng.randint(5, 95)
    success = rng.random() < success_rate - complexity / 400
    tokens = int(rng.lognormvariate(8, 0.6))
    estimate = round(unit_cost * tokens / 1000, 6)
    error = None if success else rng.choice(list(ErrorType))
    return ExecutionRecord(
        task_id=task_id,
        timestamp=end - timedelta(days=365 * rng.random() ** 2),  # busier lately
        task_type=task_type,
        task_description=rng.choice(descriptions).format(c=rng.choice(COMPONENTS)),
        repo=rng.choices(REPOS, weights=REPO_WEIGHTS)[0],
        file_count=rng.randint(1, 30),
        estimated_tokens=tokens,
        model_tier=tier,
        pool_type=rng.choice(POOLS),
        swarm_topology=rng.choice(TOPOLOGIES),
        routing_confidence=round(rng.uniform(0.5, 1.0), 3),
        complexity_score=complexity,
        success=success,
        duration_seconds=round(rng.lognormvariate(math.log(40), 0.8), 2),
        quality_score=rng.randint(60, 100) if success and rng.random() < 0.85 else None,
        cost_estimate=estimate,
        actual_cost=round(estimate * rng.lognormvariate(0, 0.25), 6),
        error_type=error,
        error_message=f"{error.value} while running the task" if error else None,
        solution_summary=rng.choice(solutions) if success or rng.random() < 0.4 else None,
        metadata={"sample": True},
    )
