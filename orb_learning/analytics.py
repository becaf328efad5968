"""Tier, pool and solution-pattern performance, read from the materialized views.

Windows are made of whole UTC buckets: ``days_back=30`` covers the tier view's days from
the start of the UTC day 30 days ago up to now, and the pool view's hours from the start of
the UTC hour ``days_back`` days ago. A day is 24 hours whatever the session's TimeZone
(``now() - make_interval(hours => 24 * days)``: calendar-day arithmetic would shift the
window by an hour across a daylight-saving change). Averages and rates are recomputed
from the views' additive parts (sums and counts), so a window's answer equals the same
aggregate on the base rows of that window. The views are as fresh as their last refresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

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
FROM tier_performance_mv
WHERE date >= date_trunc('day', now() - make_interval(hours => 24 * $1), 'UTC')
  AND ($2::text IS NULL OR repo = $2::text)
GROUP BY model_tier, task_type
ORDER BY model_tier, task_type"""

POOL_PERFORMANCE = """\
SELECT pool_type,
       $2::text AS repo,
       sum(total_tasks)::bigint AS total_tasks,
       sum(successful_tasks)::bigint AS successful_tasks,
       sum(successful_tasks)::double precision / sum(total_tasks) AS success_rate,
       sum(sum_duration) / sum(total_tasks) AS avg_duration,
       sum(sum_cost) / sum(total_tasks) AS avg_cost
FROM pool_performance_mv
WHERE hour >= date_trunc('hour', now() - make_interval(hours => 24 * $1), 'UTC')
  AND ($2::text IS NULL OR repo = $2::text)
GROUP BY pool_type
ORDER BY pool_type"""

SOLUTION_PATTERNS = """\
WITH selected AS (
    SELECT * FROM solution_patterns_mv WHERE $1::text IS NULL OR repo = $1::text
), patterns AS (
    SELECT pattern_id,
           solution_summary,
           sum(usage_count)::bigint AS usage_count,
           sum(success_count)::bigint AS success_count,
           sum(sum_quality)::double precision / nullif(sum(quality_count), 0) AS avg_quality,
           array_agg(repo ORDER BY repo) AS repos,
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


async def tier_performance(
    connection: asyncpg.Connection, *, repo: str | None, days_back: int
) -> list[dict[str, Any]]:
    """One row per (model tier, task type) over the window."""
    return [dict(r) for r in await connection.fetch(TIER_PERFORMANCE, days_back, repo)]


async def pool_performance(
    connection: asyncpg.Connection, *, repo: str | None, days_back: int
) -> list[dict[str, Any]]:
    """One row per pool over the window."""
    return [dict(r) for r in await connection.fetch(POOL_PERFORMANCE, days_back, repo)]


async def solution_patterns(
    connection: asyncpg.Connection, *, repo: str | None, min_usage: int, limit: int
) -> list[dict[str, Any]]:
    """Top patterns by success rate, then usage; one row per solution summary."""
    rows = await connection.fetch(SOLUTION_PATTERNS, repo, min_usage, limit)
    return [dict(r) for r in rows]


async def refresh_views(connection: asyncpg.Connection, view_names: tuple[str, ...]) -> None:
    """REFRESH ... CONCURRENTLY: readers and writers are not blocked while it runs."""
    for name in view_names:
        await connection.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {name}")  # constant
