"""The three analytics as the benchmark calls them: through the public API, and as direct
aggregates over the base table (what the API really runs is captured in :mod:`capture`).

The direct SQL is written here on purpose (not taken from the library): it is the plain
GROUP BY a service would run without the views, over the same window as the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from orb_learning import LearningDatabase

from .data import FREQUENT_REPO

SCOPES: dict[str, str | None] = {"all": None, "repo": FREQUENT_REPO}
TIER_DAYS = 30
POOL_DAYS = 7
MIN_USAGE = 5
LIMIT = 10
METHODS = ("tier", "pool", "patterns")
CUSTOM = "fresh=True, custom plans"
"""Mode of the API's fresh=True statement run on a connection that never uses generic plans."""
API_CALLS = {
    "tier": f"get_tier_performance(days_back={TIER_DAYS})",
    "pool": f"get_pool_performance(days_back={POOL_DAYS})",
    "patterns": f"get_solution_patterns(min_usage={MIN_USAGE}, limit={LIMIT})",
}
VIEWS = {
    "tier": "tier_performance_mv",
    "pool": "pool_performance_mv",
    "patterns": "solution_patterns_mv",
}

DIRECT_TIER = """\
SELECT model_tier, task_type, count(*) AS total_executions,
       count(*) FILTER (WHERE success) AS successful_count,
       (count(*) FILTER (WHERE success))::double precision / count(*) AS success_rate,
       avg(duration_seconds) AS avg_duration, avg(actual_cost) AS avg_cost,
       avg(quality_score)::double precision AS avg_quality
FROM executions
WHERE "timestamp" >= date_trunc('day', now() - make_interval(hours => 24 * $1), 'UTC')
  AND ($2::text IS NULL OR repo = $2::text)
GROUP BY model_tier, task_type
ORDER BY model_tier, task_type"""

DIRECT_POOL = """\
SELECT pool_type, count(*) AS total_tasks, count(*) FILTER (WHERE success) AS successful_tasks,
       (count(*) FILTER (WHERE success))::double precision / count(*) AS success_rate,
       avg(duration_seconds) AS avg_duration, avg(actual_cost) AS avg_cost
FROM executions
WHERE "timestamp" >= date_trunc('hour', now() - make_interval(hours => 24 * $1), 'UTC')
  AND ($2::text IS NULL OR repo = $2::text)
GROUP BY pool_type
ORDER BY pool_type"""

DIRECT_PATTERNS = """\
SELECT solution_summary, count(*) AS usage_count,
       count(*) FILTER (WHERE success) AS success_count,
       (count(*) FILTER (WHERE success))::double precision / count(*) AS success_rate,
       avg(quality_score)::double precision AS avg_quality,
       array_agg(DISTINCT repo ORDER BY repo) AS repos,
       array_agg(DISTINCT task_type ORDER BY task_type) AS task_types,
       min("timestamp") AS first_seen, max("timestamp") AS last_seen
FROM executions
WHERE solution_summary IS NOT NULL AND ($1::text IS NULL OR repo = $1::text)
GROUP BY solution_summary
HAVING count(*) >= $2
ORDER BY success_rate DESC, usage_count DESC, solution_summary
LIMIT $3"""

DIRECT = {"tier": DIRECT_TIER, "pool": DIRECT_POOL, "patterns": DIRECT_PATTERNS}


def key(method: str, scope: str, mode: str) -> str:
    """The name of a case in the results: ``tier/all/fresh=True``."""
    return f"{method}/{scope}/{mode}"


def direct_args(method: str, repo: str | None) -> tuple[Any, ...]:
    if method == "tier":
        return (TIER_DAYS, repo)
    if method == "pool":
        return (POOL_DAYS, repo)
    return (repo, MIN_USAGE, LIMIT)


def api_call(
    db: LearningDatabase, method: str, repo: str | None, fresh: bool
) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """A call of the public async API, as a service makes it."""
    if method == "tier":
        return lambda: db.get_tier_performance(repo=repo, days_back=TIER_DAYS, fresh=fresh)
    if method == "pool":
        return lambda: db.get_pool_performance(repo=repo, days_back=POOL_DAYS, fresh=fresh)
    return lambda: db.get_solution_patterns(
        repo=repo, min_usage=MIN_USAGE, limit=LIMIT, fresh=fresh
    )


def direct_call(
    connection: asyncpg.Connection, method: str, repo: str | None
) -> Callable[[], Awaitable[list[asyncpg.Record]]]:
    sql, args = DIRECT[method], direct_args(method, repo)
    return lambda: connection.fetch(sql, *args)
