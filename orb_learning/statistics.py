"""Execution statistics and performance metrics over a recent window, and the database's
status: the first version's ``execution_statistics``, ``performance_metrics`` and
``database_status`` MCP tools, as library functions (``orb-learning mcp`` serves them).

Each answer is a pydantic model; ``.model_dump(mode="json")`` gives the JSON the MCP tools
return. Windows are one of :data:`TIME_RANGES` and end now (the server's clock); every
figure is computed from the base rows of the window in one statement, so they agree with
each other (the materialized views are not read, and need not be fresh).

    async with LearningDatabase() as db:
        stats = await execution_statistics(db, "24h")
        metrics = await performance_metrics(db, "7d")
        status = await database_status(db)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, Field

from ._status import DatabaseStatus, database_status
from .errors import ArgumentError

if TYPE_CHECKING:
    import asyncpg

    from .database import LearningDatabase

__all__ = [
    "TIME_RANGES",
    "Bucket",
    "Costs",
    "Counts",
    "DatabaseStatus",
    "Durations",
    "ExecutionStatistics",
    "Group",
    "Memory",
    "PerformanceMetrics",
    "TierMetrics",
    "TimeRange",
    "check_time_range",
    "database_status",
    "execution_statistics",
    "performance_metrics",
]

TimeRange = Literal["1h", "24h", "7d", "30d", "90d"]
"""The windows the first version's tools accepted (and only these)."""
TIME_RANGES: dict[str, tuple[timedelta, timedelta]] = {
    "1h": (timedelta(hours=1), timedelta(minutes=5)),
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
    "30d": (timedelta(days=30), timedelta(days=1)),
    "90d": (timedelta(days=90), timedelta(days=7)),
}
"""Each time range: its window, and the width of its time-series buckets."""
TOP_REPOSITORIES = 10
assert tuple(TIME_RANGES) == get_args(TimeRange)


def check_time_range(value: Any) -> tuple[timedelta, timedelta]:
    """The window and bucket width of ``value``; anything else is an :class:`ArgumentError`."""
    if not isinstance(value, str) or value not in TIME_RANGES:
        raise ArgumentError(f"time_range must be one of {', '.join(TIME_RANGES)}, got {value!r}")
    return TIME_RANGES[value]


# -- execution statistics ------------------------------------------------------------------


class Counts(BaseModel):
    """How many executions, how many succeeded, how long and how costly they were."""

    executions: int
    successful: int
    success_rate: float | None = Field(description="successful / executions, None for none")
    avg_duration_seconds: float | None
    total_cost: float = Field(description="Sum of actual_cost, USD")
    avg_quality_score: float | None = Field(description="Over the executions that have one")


class Group(Counts):
    """The counts of one model tier, pool, repository or task type."""

    name: str


class Bucket(Counts):
    """The counts of one time bucket (only buckets holding executions are listed)."""

    start: datetime = Field(description="Start of the bucket; the first may begin before since")


class ExecutionStatistics(BaseModel):
    """What ran in the window, and how it went, by tier, pool, repo, task type and time."""

    time_range: str
    since: datetime = Field(description="Start of the window (now minus the time range)")
    bucket_seconds: int = Field(description="Width of the time_series buckets")
    total: Counts
    by_model_tier: list[Group]
    by_pool_type: list[Group]
    top_repositories: list[Group] = Field(description=f"The {TOP_REPOSITORIES} busiest repos")
    by_task_type: list[Group]
    time_series: list[Bucket]


STATISTICS_SQL = """\
SELECT CASE WHEN GROUPING(model_tier) = 0 THEN 'model_tier'
            WHEN GROUPING(pool_type) = 0 THEN 'pool_type'
            WHEN GROUPING(repo) = 0 THEN 'repo'
            WHEN GROUPING(task_type) = 0 THEN 'task_type'
            WHEN GROUPING(bucket) = 0 THEN 'bucket'
            ELSE 'total' END AS dimension,
       coalesce(model_tier, pool_type, repo, task_type) AS name,
       bucket AS start,
       count(*) AS executions,
       count(*) FILTER (WHERE success) AS successful,
       avg(duration_seconds)::float8 AS avg_duration_seconds,
       coalesce(sum(actual_cost), 0)::float8 AS total_cost,
       avg(quality_score)::float8 AS avg_quality_score
FROM (
    SELECT model_tier, pool_type, repo, task_type, success, duration_seconds, actual_cost,
           quality_score,
           date_bin($2::interval, "timestamp", TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket
    FROM executions
    WHERE "timestamp" >= $1::timestamptz
) AS windowed
GROUP BY GROUPING SETS ((), (model_tier), (pool_type), (repo), (task_type), (bucket))"""
SINCE_SQL = "SELECT now() - $1::interval"


async def execution_statistics(
    db: LearningDatabase, time_range: TimeRange = "24h"
) -> ExecutionStatistics:
    """Counts, success rate, duration and cost of the window's executions: in total, per
    model tier, pool, task type, the busiest repositories, and per time bucket."""
    window, bucket = check_time_range(time_range)
    async with db.connection() as connection:
        since = await _since(connection, window)
        rows = await connection.fetch(STATISTICS_SQL, since, bucket)
    parts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        parts.setdefault(row["dimension"], []).append(_counts(row))
    busiest = _by_size(parts.get("repo", []))[:TOP_REPOSITORIES]
    return ExecutionStatistics(
        time_range=time_range,
        since=since,
        bucket_seconds=int(bucket.total_seconds()),
        total=Counts.model_validate(parts["total"][0]),
        by_model_tier=[Group.model_validate(g) for g in _by_size(parts.get("model_tier", []))],
        by_pool_type=[Group.model_validate(g) for g in _by_size(parts.get("pool_type", []))],
        top_repositories=[Group.model_validate(g) for g in busiest],
        by_task_type=[Group.model_validate(g) for g in _by_size(parts.get("task_type", []))],
        time_series=sorted(
            (Bucket.model_validate(b) for b in parts.get("bucket", [])), key=lambda b: b.start
        ),
    )


def _counts(row: asyncpg.Record) -> dict[str, Any]:
    values = dict(row)
    values["success_rate"] = _rate(values["successful"], values["executions"])
    return values


def _by_size(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(groups, key=lambda g: (-g["executions"], g["name"]))


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


async def _since(connection: asyncpg.Connection, window: timedelta) -> datetime:
    since: datetime = await connection.fetchval(SINCE_SQL, window)
    return since


# -- performance metrics -------------------------------------------------------------------


class Durations(BaseModel):
    """Wall-clock durations in seconds (None when the window holds no execution)."""

    avg: float | None
    p50: float | None
    p95: float | None
    p99: float | None


class Costs(BaseModel):
    """Actual costs in USD; ``avg_savings`` is the mean of cost_estimate - actual_cost
    (positive: cheaper than the router predicted)."""

    total: float
    avg: float | None
    avg_savings: float | None


class Memory(BaseModel):
    """Peak memory of the workers in MB, over the executions that report it."""

    avg_mb: float | None
    p95_mb: float | None


class TierMetrics(BaseModel):
    """The metrics of one model tier."""

    model_tier: str
    executions: int
    success_rate: float | None
    duration: Durations
    cost: Costs


class PerformanceMetrics(BaseModel):
    """Duration percentiles, costs and memory of the window's executions, and per tier."""

    time_range: str
    since: datetime
    executions: int
    success_rate: float | None
    avg_quality_score: float | None
    duration: Durations
    cost: Costs
    memory: Memory
    by_model_tier: list[TierMetrics]


PERFORMANCE_SQL = """\
SELECT GROUPING(model_tier) = 0 AS per_tier,
       model_tier,
       count(*) AS executions,
       count(*) FILTER (WHERE success) AS successful,
       avg(quality_score)::float8 AS avg_quality_score,
       avg(duration_seconds)::float8 AS avg_duration,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
           WITHIN GROUP (ORDER BY duration_seconds) AS duration_percentiles,
       coalesce(sum(actual_cost), 0)::float8 AS total_cost,
       avg(actual_cost)::float8 AS avg_cost,
       avg(cost_estimate - actual_cost)::float8 AS avg_savings,
       avg(peak_memory_mb)::float8 AS avg_memory,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY peak_memory_mb) AS p95_memory
FROM executions
WHERE "timestamp" >= $1::timestamptz
GROUP BY GROUPING SETS ((), (model_tier))"""


async def performance_metrics(
    db: LearningDatabase, time_range: TimeRange = "24h"
) -> PerformanceMetrics:
    """Duration average and p50/p95/p99, cost total/average/savings and peak memory of the
    window's executions, overall and per model tier (continuous percentiles)."""
    window, _ = check_time_range(time_range)
    async with db.connection() as connection:
        since = await _since(connection, window)
        rows = await connection.fetch(PERFORMANCE_SQL, since)
    overall = next(row for row in rows if not row["per_tier"])
    tiers = sorted(
        (row for row in rows if row["per_tier"]), key=lambda r: (-r["executions"], r["model_tier"])
    )
    return PerformanceMetrics(
        time_range=time_range,
        since=since,
        executions=overall["executions"],
        success_rate=_rate(overall["successful"], overall["executions"]),
        avg_quality_score=overall["avg_quality_score"],
        duration=_durations(overall),
        cost=_costs(overall),
        memory=Memory(avg_mb=overall["avg_memory"], p95_mb=overall["p95_memory"]),
        by_model_tier=[
            TierMetrics(
                model_tier=row["model_tier"],
                executions=row["executions"],
                success_rate=_rate(row["successful"], row["executions"]),
                duration=_durations(row),
                cost=_costs(row),
            )
            for row in tiers
        ],
    )


def _durations(row: asyncpg.Record) -> Durations:
    p50, p95, p99 = row["duration_percentiles"] or (None, None, None)
    return Durations(avg=row["avg_duration"], p50=p50, p95=p95, p99=p99)


def _costs(row: asyncpg.Record) -> Costs:
    return Costs(total=row["total_cost"], avg=row["avg_cost"], avg_savings=row["avg_savings"])
