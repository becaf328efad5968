"""Tier, pool and solution-pattern performance: materialized buckets plus a live tail.

Each view holds the executions before its *watermark* (moved by every refresh). With
``fresh=True`` (the default) an answer adds to the view's buckets a live aggregate of the
base rows from the watermark on, read through the btree on ``timestamp``, as TimescaleDB's
real-time aggregates do: a row stored a second ago is counted. With ``fresh=False`` the
answer reads the view alone (fastest, as fresh as the last refresh). A row that arrives
late, stamped before the watermark but written after the refresh, or an older row updated
or deleted after it, is counted from the next refresh on, ``fresh=True`` included; before
the seal too (revision 0007: a trigger marks that history, the next refresh rebuilds it).

Each view is a plain view over a sealed history part and a recent part (see
:mod:`._sealed`); the live tail starts at the recent part's watermark. The solution patterns
read ``solution_patterns_mv``, the materialized merge of its parts.

Windows are made of whole UTC buckets: ``days_back=30`` covers the tier view's days from
the start of the UTC day 30 days ago up to now, and the pool view's hours from the start of
the UTC hour ``days_back`` days ago. A day is 24 hours whatever the session's TimeZone
(calendar-day arithmetic would shift the window by an hour across a daylight-saving
change). Averages and rates are recomputed from additive parts (sums and counts), so a
window's answer equals the same aggregate on the base rows of that window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ._catalog import PUBLIC_ROLLUPS as SEALED_ROLLUPS, PUBLIC_VIEWS as SEALED_VIEWS

if TYPE_CHECKING:
    import asyncpg

_REPO = "($2::text IS NULL OR repo = $2::text)"

# The window's start and where the live tail begins, read first and passed to the main
# statement as parameters: a bound the planner cannot see at plan time (a sub-select of
# the watermark) made it scan the whole table for a tail of a few rows.
BOUNDS = """\
SELECT date_trunc($2, now() - make_interval(hours => 24 * $3), 'UTC') AS start,
       greatest(date_trunc($2, now() - make_interval(hours => 24 * $3), 'UTC'),
                (SELECT watermark FROM view_watermarks WHERE view_name = $1)) AS live_from"""
PATTERN_BOUNDS = """\
SELECT nullif(watermark, '-infinity') AS live_from FROM view_watermarks WHERE view_name = $1"""


def _windowed(bucket: str, view: str, keys: str, parts: str, live_parts: str) -> str:
    """``parts`` of ``view`` from the window's start ($1), plus (``{live}``) the live
    tail's from $3. A rollup over all repos (no ``repo`` column) is read whole-window."""
    repo = "" if view in _ALL_REPOS else f" AND {_REPO}"
    return f"""\
SELECT {keys}, {parts} FROM {view}
WHERE {"date" if bucket == "day" else "hour"} >= $1{repo}
{{live}}
UNION ALL
SELECT {keys}, {live_parts} FROM executions
WHERE "timestamp" >= $3 AND {_REPO}
GROUP BY {keys}
{{/live}}"""


_ALL_REPOS = {rollup.name for rollup in SEALED_ROLLUPS.values()}
# Where each view's live tail starts: its recent part's watermark (a rollup's recent part
# has its source's).
_RECENT = {view.name: view.recent.name for view in SEALED_VIEWS}
_COUNTS = "count(*), count(*) FILTER (WHERE success), sum(duration_seconds), sum(actual_cost)"

_TIER = (
    "model_tier, task_type",
    "total_executions, successful_count, sum_duration, sum_cost, sum_quality, quality_count",
    f"{_COUNTS}, sum(quality_score), count(quality_score)",
)
TIER_PARTS = _windowed("day", "tier_performance_mv", *_TIER)
TIER_PERFORMANCE = """\
SELECT model_tier,
       task_type,
       $2::text AS repo,
       sum(total_executions)::bigint AS total_executions,
       sum(successful_count)::bigint AS successful_count,
       sum(successful_count)::double precision / sum(total_executions) AS success_rate,
       sum(sum_duration) / sum(total_executions) AS avg_duration,
       sum(sum_cost) / sum(total_executions) AS avg_cost,
       sum(sum_quality)::double precision / nullif(sum(quality_count), 0) AS avg_quality
FROM ({parts}) AS parts
GROUP BY model_tier, task_type
ORDER BY model_tier, task_type"""

_POOL = ("pool_type", "total_tasks, successful_tasks, sum_duration, sum_cost", _COUNTS)
POOL_PARTS = _windowed("hour", "pool_performance_mv", *_POOL)
# Windows over all repos read each per-repo view's rollup (a few hundred buckets, not one
# per repo): per-repo view -> (rollup, its parts).
_ALL_REPOS_PARTS = {
    "tier_performance_mv": _windowed("day", SEALED_ROLLUPS["tier_performance_mv"].name, *_TIER),
    "pool_performance_mv": _windowed("hour", SEALED_ROLLUPS["pool_performance_mv"].name, *_POOL),
}
POOL_PERFORMANCE = """\
SELECT pool_type,
       $2::text AS repo,
       sum(total_tasks)::bigint AS total_tasks,
       sum(successful_tasks)::bigint AS successful_tasks,
       sum(successful_tasks)::double precision / sum(total_tasks) AS success_rate,
       sum(sum_duration) / sum(total_tasks) AS avg_duration,
       sum(sum_cost) / sum(total_tasks) AS avg_cost
FROM ({parts}) AS parts
GROUP BY pool_type
ORDER BY pool_type"""

# solution_patterns_mv is the materialized merge of its two parts (refreshed with them):
# reading both parts here instead doubled the rows this statement sorts and merges.
_PATTERN_VIEW = next(view for view in SEALED_VIEWS if view.name == "solution_patterns_mv")
PATTERN_PARTS = """\
SELECT pattern_id, solution_summary, repo, usage_count, success_count, sum_quality,
       quality_count, task_types, first_seen, last_seen
FROM solution_patterns_mv WHERE $1::text IS NULL OR repo = $1::text
{live}
UNION ALL
SELECT md5(solution_summary)::uuid, solution_summary, repo, count(*),
       count(*) FILTER (WHERE success), sum(quality_score), count(quality_score),
       array_agg(DISTINCT task_type), min("timestamp"), max("timestamp")
FROM executions
WHERE ($4::timestamptz IS NULL OR "timestamp" >= $4)
  AND solution_summary IS NOT NULL AND ($1::text IS NULL OR repo = $1::text)
GROUP BY solution_summary, repo
{/live}"""
SOLUTION_PATTERNS = """\
WITH selected AS ({parts}),
patterns AS (
    SELECT pattern_id,
           solution_summary,
           sum(usage_count)::bigint AS usage_count,
           sum(success_count)::bigint AS success_count,
           sum(sum_quality)::double precision / nullif(sum(quality_count), 0) AS avg_quality,
           array_agg(DISTINCT repo ORDER BY repo) AS repos,
           min(first_seen) AS first_seen,
           max(last_seen) AS last_seen
    FROM selected
    GROUP BY pattern_id, solution_summary
    HAVING sum(usage_count) >= $2
), task_types AS (
    SELECT s.pattern_id, array_agg(DISTINCT t.task_type ORDER BY t.task_type) AS task_types
    FROM selected s CROSS JOIN LATERAL unnest(s.task_types) AS t(task_type)
    WHERE s.pattern_id IN (SELECT pattern_id FROM patterns)
    GROUP BY s.pattern_id
)
SELECT p.solution_summary,
       $1::text AS repo,
       p.usage_count,
       p.success_count,
       p.success_count::double precision / p.usage_count AS success_rate,
       p.avg_quality,
       p.repos,
       tt.task_types,
       p.first_seen,
       p.last_seen,
       p.pattern_id
FROM patterns p JOIN task_types tt USING (pattern_id)
ORDER BY success_rate DESC, p.usage_count DESC, p.solution_summary
LIMIT $3"""


def compose(outer: str, parts: str, *, fresh: bool) -> str:
    """The statement for one freshness mode: the live tail kept or cut out."""
    head, rest = parts.split("{live}")
    live, tail = rest.split("{/live}")
    return outer.format(parts=head + (live if fresh else "") + tail)


async def tier_performance(
    connection: asyncpg.Connection, *, repo: str | None, days_back: int, fresh: bool
) -> list[dict[str, Any]]:
    """One row per (model tier, task type) over the window."""
    return await _windowed_rows(
        connection, TIER_PERFORMANCE, TIER_PARTS, "tier_performance_mv", "day",
        repo=repo, days_back=days_back, fresh=fresh,
    )  # fmt: skip


async def pool_performance(
    connection: asyncpg.Connection, *, repo: str | None, days_back: int, fresh: bool
) -> list[dict[str, Any]]:
    """One row per pool over the window."""
    return await _windowed_rows(
        connection, POOL_PERFORMANCE, POOL_PARTS, "pool_performance_mv", "hour",
        repo=repo, days_back=days_back, fresh=fresh,
    )  # fmt: skip


async def solution_patterns(
    connection: asyncpg.Connection, *, repo: str | None, min_usage: int, limit: int, fresh: bool
) -> list[dict[str, Any]]:
    """Top patterns by success rate, then usage; one row per solution summary."""
    sql = compose(SOLUTION_PATTERNS, PATTERN_PARTS, fresh=fresh)
    async with _snapshot(connection):
        live_from = await connection.fetchval(PATTERN_BOUNDS, _PATTERN_VIEW.recent.name)
        args = (repo, min_usage, limit, *((live_from,) if fresh else ()))
        return [dict(r) for r in await connection.fetch(sql, *args)]


async def _windowed_rows(
    connection: asyncpg.Connection,
    outer: str,
    parts: str,
    view: str,
    bucket: str,
    *,
    repo: str | None,
    days_back: int,
    fresh: bool,
) -> list[dict[str, Any]]:
    """``outer`` over ``parts`` of ``view``, or of its rollup when ``repo`` is None."""
    if repo is None:
        view, parts = SEALED_ROLLUPS[view].name, _ALL_REPOS_PARTS[view]
    sql = compose(outer, parts, fresh=fresh)
    async with _snapshot(connection):
        bounds = await connection.fetchrow(BOUNDS, _RECENT[view], bucket, days_back)
        args = (bounds["start"], repo, *((bounds["live_from"],) if fresh else ()))
        return [dict(r) for r in await connection.fetch(sql, *args)]


@asynccontextmanager
async def _snapshot(connection: asyncpg.Connection) -> AsyncIterator[None]:
    """One snapshot for the watermark and the view (a refresh commits both at once, so
    no row is counted twice or missed), and custom plans: a generic plan of a prepared
    statement cannot use an index for ``($2 IS NULL OR repo = $2)``."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        yield
