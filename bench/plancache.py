"""What PostgreSQL's plan cache does to the API's prepared statements."""

from __future__ import annotations

import statistics
from functools import partial
from typing import Any

from orb_learning import LearningDatabase

from . import data, queries
from .data import FREQUENT_REPO
from .timing import timed


async def plan_cache(db: LearningDatabase) -> list[dict[str, Any]]:
    """What the plan cache of a pooled connection (the one the calls reused, most
    likely) chose for the analytics statements: generic or custom plans."""
    async with db.connection() as connection:
        rows = await connection.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        )
    kinds = {"SELECT model_tier": "tier", "SELECT pool_type": "pool", "WITH selected": "patterns"}
    found = []
    for row in rows:
        method = next(
            (m for prefix, m in kinds.items() if row["statement"].startswith(prefix)), None
        )
        if method:
            found.append(
                {
                    "statement": f"{method}, fresh={'UNION ALL' in row['statement']}",
                    "generic_plans": row["generic_plans"],
                    "custom_plans": row["custom_plans"],
                }
            )
    return sorted(found, key=lambda r: str(r["statement"]))


async def plan_cache_order(url: str, calls: int = 12) -> dict[str, float]:
    """Median ms of get_solution_patterns for the frequent repo on a one-connection pool:
    when those calls come first, and after ``calls`` unfiltered calls."""
    result: dict[str, float] = {}
    for label, unfiltered_first in (("repo calls first", False), ("after unfiltered calls", True)):
        async with data.open_database(url, pool_size=1) as db:
            if unfiltered_first:
                for _ in range(calls):
                    await db.get_solution_patterns(min_usage=queries.MIN_USAGE, limit=queries.LIMIT)
            times = [
                await timed(
                    partial(
                        db.get_solution_patterns,
                        repo=FREQUENT_REPO,
                        min_usage=queries.MIN_USAGE,
                        limit=queries.LIMIT,
                    )
                )
                for _ in range(calls)
            ]
        result[label] = statistics.median(times)
    return result
