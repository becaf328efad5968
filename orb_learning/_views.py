"""The materialized views: their SQL, versioned, for the migrations to create.

Each view keeps additive parts (counts and sums) so that any window can be aggregated
exactly from its buckets (never an average of averages), and holds all history: the API
filters by window. A view's definition never changes once released; a change is a new
versioned :class:`MaterializedView` and a migration that replaces the old one (Alembic's
"replaceable objects" recipe), so old migrations keep producing the schema they did.
"""

from __future__ import annotations

from dataclasses import replace

from ._ddl import MaterializedView

_ADDITIVE_COMMENTS = {
    "sum_duration": "Sum of duration_seconds (additive: divide by the count for a window)",
    "sum_cost": "Sum of actual_cost in USD (additive)",
    "sum_quality": "Sum of quality_score over rows that have one (additive)",
    "quality_count": "Rows with a quality_score (the divisor of sum_quality)",
}

TIER_PERFORMANCE_V1 = MaterializedView(
    name="tier_performance_mv",
    select="""\
SELECT repo,
       model_tier,
       task_type,
       date_trunc('day', "timestamp", 'UTC') AS date,
       count(*) AS total_executions,
       count(*) FILTER (WHERE success) AS successful_count,
       sum(duration_seconds) AS sum_duration,
       sum(actual_cost) AS sum_cost,
       sum(quality_score) AS sum_quality,
       count(quality_score) AS quality_count,
       avg(duration_seconds) AS avg_duration,
       avg(actual_cost) AS avg_cost,
       avg(quality_score)::double precision AS avg_quality,
       (count(*) FILTER (WHERE success))::double precision / count(*) AS success_rate
FROM executions
GROUP BY repo, model_tier, task_type, date_trunc('day', "timestamp", 'UTC')
WITH DATA""",
    unique_columns=("repo", "model_tier", "task_type", "date"),
    comment=(
        "Per repo, model tier, task type and UTC day: executions, successes and additive sums. "
        "Aggregate a window with sum(successful_count)/sum(total_executions), "
        "sum(sum_duration)/sum(total_executions)... never avg(avg_*). "
        "Refreshed by orb-learning (REFRESH MATERIALIZED VIEW CONCURRENTLY)."
    ),
    column_comments={
        "date": "UTC day of the executions (timestamptz at 00:00 UTC)",
        "total_executions": "Executions in the bucket",
        "successful_count": "Successful executions in the bucket",
        "avg_duration": "Average duration of the bucket alone, seconds",
        "avg_cost": "Average actual cost of the bucket alone, USD",
        "avg_quality": "Average quality score of the bucket alone (NULL when none)",
        "success_rate": "successful_count / total_executions of the bucket alone (0-1)",
        **_ADDITIVE_COMMENTS,
    },
)

POOL_PERFORMANCE_V1 = MaterializedView(
    name="pool_performance_mv",
    select="""\
SELECT pool_type,
       repo,
       date_trunc('hour', "timestamp", 'UTC') AS hour,
       count(*) AS total_tasks,
       count(*) FILTER (WHERE success) AS successful_tasks,
       sum(duration_seconds) AS sum_duration,
       sum(actual_cost) AS sum_cost,
       avg(duration_seconds) AS avg_duration,
       avg(actual_cost) AS avg_cost,
       (count(*) FILTER (WHERE success))::double precision / count(*) AS success_rate
FROM executions
GROUP BY pool_type, repo, date_trunc('hour', "timestamp", 'UTC')
WITH DATA""",
    unique_columns=("pool_type", "repo", "hour"),
    comment=(
        "Per worker pool, repo and UTC hour: tasks, successes and additive sums. "
        "Aggregate a window with sum(successful_tasks)/sum(total_tasks), never avg(avg_*). "
        "Refreshed by orb-learning (REFRESH MATERIALIZED VIEW CONCURRENTLY)."
    ),
    column_comments={
        "hour": "UTC hour of the tasks",
        "total_tasks": "Tasks in the bucket",
        "successful_tasks": "Successful tasks in the bucket",
        "avg_duration": "Average duration of the bucket alone, seconds",
        "avg_cost": "Average actual cost of the bucket alone, USD",
        "success_rate": "successful_tasks / total_tasks of the bucket alone (0-1)",
        "sum_duration": _ADDITIVE_COMMENTS["sum_duration"],
        "sum_cost": _ADDITIVE_COMMENTS["sum_cost"],
    },
)

SOLUTION_PATTERNS_V1 = MaterializedView(
    name="solution_patterns_mv",
    select="""\
SELECT md5(solution_summary)::uuid AS pattern_id,
       solution_summary,
       repo,
       count(*) AS usage_count,
       count(*) FILTER (WHERE success) AS success_count,
       (count(*) FILTER (WHERE success))::double precision / count(*) AS success_rate,
       sum(quality_score) AS sum_quality,
       count(quality_score) AS quality_count,
       avg(quality_score)::double precision AS avg_quality,
       array_agg(DISTINCT task_type ORDER BY task_type) AS task_types,
       min("timestamp") AS first_seen,
       max("timestamp") AS last_seen
FROM executions
WHERE solution_summary IS NOT NULL
GROUP BY solution_summary, repo
WITH DATA""",
    unique_columns=("pattern_id", "repo"),
    comment=(
        "Per solution summary and repo, over all history: how often the solution was used "
        "and how often it succeeded. No usage floor: filter usage_count yourself. "
        "Refreshed by orb-learning (REFRESH MATERIALIZED VIEW CONCURRENTLY)."
    ),
    column_comments={
        "pattern_id": "md5 of solution_summary as a UUID: a stable id of the pattern",
        "usage_count": "Executions that used this solution in this repo",
        "success_count": "Of those, the successful ones",
        "success_rate": "success_count / usage_count (0-1)",
        "task_types": "Distinct task types the solution was used for",
        "first_seen": "First execution with this solution",
        "last_seen": "Latest execution with this solution",
        "sum_quality": _ADDITIVE_COMMENTS["sum_quality"],
        "quality_count": _ADDITIVE_COMMENTS["quality_count"],
    },
)


def _up_to_watermark(view: MaterializedView) -> MaterializedView:
    """The same view, materializing only the executions before its watermark (revision
    0002): analytics with ``fresh=True`` add the rows from the watermark on, live."""
    condition = (
        '"timestamp" < (SELECT watermark FROM view_watermarks '
        f"WHERE view_watermarks.view_name = '{view.name}')"
    )
    marker = "FROM executions\n"
    if f"{marker}WHERE " in view.select:
        select = view.select.replace(f"{marker}WHERE ", f"{marker}WHERE {condition}\n  AND ", 1)
    else:
        select = view.select.replace(marker, f"{marker}WHERE {condition}\n", 1)
    comment = view.comment.replace(
        " Refreshed by",
        " Holds the executions before its watermark "
        "(view_watermarks); rows from it on are added live by the API. Refreshed by",
    )
    return replace(view, select=select, comment=comment)


TIER_PERFORMANCE_V2 = _up_to_watermark(TIER_PERFORMANCE_V1)
POOL_PERFORMANCE_V2 = _up_to_watermark(POOL_PERFORMANCE_V1)
SOLUTION_PATTERNS_V2 = _up_to_watermark(SOLUTION_PATTERNS_V1)


_ROLLUP_NOTE = (
    " Holds what {source} holds (same watermark, refreshed with it in one transaction): "
    "a window over all repos reads a few hundred rows here instead of one per repo there."
)

TIER_PERFORMANCE_ALL_REPOS_V1 = MaterializedView(
    name="tier_performance_all_repos_mv",
    select="""\
SELECT date,
       model_tier,
       task_type,
       sum(total_executions)::bigint AS total_executions,
       sum(successful_count)::bigint AS successful_count,
       sum(sum_duration) AS sum_duration,
       sum(sum_cost) AS sum_cost,
       sum(sum_quality)::bigint AS sum_quality,
       sum(quality_count)::bigint AS quality_count,
       sum(sum_duration) / sum(total_executions) AS avg_duration,
       sum(sum_cost) / sum(total_executions) AS avg_cost,
       sum(sum_quality)::double precision / nullif(sum(quality_count), 0) AS avg_quality,
       sum(successful_count)::double precision / sum(total_executions) AS success_rate
FROM tier_performance_mv
GROUP BY date, model_tier, task_type
WITH DATA""",
    unique_columns=("date", "model_tier", "task_type"),
    comment=(
        "tier_performance_mv summed over all repos: per UTC day, model tier and task type."
        + _ROLLUP_NOTE.format(source="tier_performance_mv")
        + " Refreshed by orb-learning (REFRESH MATERIALIZED VIEW CONCURRENTLY)."
    ),
    column_comments=TIER_PERFORMANCE_V1.column_comments,
)

POOL_PERFORMANCE_ALL_REPOS_V1 = MaterializedView(
    name="pool_performance_all_repos_mv",
    select="""\
SELECT hour,
       pool_type,
       sum(total_tasks)::bigint AS total_tasks,
       sum(successful_tasks)::bigint AS successful_tasks,
       sum(sum_duration) AS sum_duration,
       sum(sum_cost) AS sum_cost,
       sum(sum_duration) / sum(total_tasks) AS avg_duration,
       sum(sum_cost) / sum(total_tasks) AS avg_cost,
       sum(successful_tasks)::double precision / sum(total_tasks) AS success_rate
FROM pool_performance_mv
GROUP BY hour, pool_type
WITH DATA""",
    unique_columns=("hour", "pool_type"),
    comment=(
        "pool_performance_mv summed over all repos: per UTC hour and worker pool."
        + _ROLLUP_NOTE.format(source="pool_performance_mv")
        + " Refreshed by orb-learning (REFRESH MATERIALIZED VIEW CONCURRENTLY)."
    ),
    column_comments=POOL_PERFORMANCE_V1.column_comments,
)

ROLLUPS: dict[str, MaterializedView] = {
    TIER_PERFORMANCE_V2.name: TIER_PERFORMANCE_ALL_REPOS_V1,
    POOL_PERFORMANCE_V2.name: POOL_PERFORMANCE_ALL_REPOS_V1,
}
"""Each per-repo view's rollup over all repos (revision 0005), refreshed right after it."""

VIEWS_0006: tuple[MaterializedView, ...] = (
    TIER_PERFORMANCE_V2,
    TIER_PERFORMANCE_ALL_REPOS_V1,
    POOL_PERFORMANCE_V2,
    POOL_PERFORMANCE_ALL_REPOS_V1,
    SOLUTION_PATTERNS_V2,
)
"""The views of revisions 0005-0006, each rollup after its source (0007 replaces them)."""
