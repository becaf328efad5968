"""``database_status``: row counts, sizes, schema revision, recent activity and the views'
freshness, with the warnings and errors an operator (or an agent) should act on.

``status`` is ``ERROR`` when something is broken (the last refresh of a view failed),
``WARNING`` when something deserves a look (thresholds below, from the first version's
alert wishes), else ``OK``. A database that cannot be reached is no status: the call raises
:class:`~orb_learning.DatabaseUnavailableError`, as every other call does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from . import migrations
from ._catalog import PUBLIC_ROLLUPS, PUBLIC_VIEWS
from ._partition_routines import leaves

if TYPE_CHECKING:
    import asyncpg

    from .database import LearningDatabase
    from .rows import ViewFreshness

LOW_SUCCESS_RATE = 0.8
"""A success rate over the last 24 hours below this is a warning."""
SLOW_AVG_DURATION = 120.0
"""An average duration over the last 24 hours above this many seconds is a warning."""
LARGE_DATABASE_MB = 1000.0
"""A database larger than this is a warning (plan retention: ``orb-learning retention``)."""
STALE_AFTER = timedelta(hours=1)
"""A recent part of a view not refreshed for this long is a warning: the answers stay exact
(they add the rows stored since), but read more base rows."""
MB = 1024 * 1024


class DatabaseInfo(BaseModel):
    """The database: its name, size, server and schema revision."""

    name: str
    size_mb: float
    executions_size_mb: float = Field(description="The executions table with its indexes")
    server_version: str
    schema_version: str | None = Field(description="Its Alembic revision (alembic_version)")
    head_version: str = Field(description="The revision this orb-learning needs")


class ExecutionCounts(BaseModel):
    """Executions stored: in all, in the last hour, day and week, first and last."""

    total: int
    recent_1h: int
    daily: int
    weekly: int
    first_at: datetime | None
    last_at: datetime | None


class DailyPerformance(BaseModel):
    """The last 24 hours' executions (None when there were none)."""

    daily_success_rate: float | None
    avg_duration_seconds: float | None
    avg_quality_score: float | None


class ViewStatus(BaseModel):
    """One materialized part of the analytics views (see ``view_freshness``)."""

    view_name: str
    watermark: datetime | None
    last_refreshed_at: datetime | None
    age_seconds: float | None = Field(description="Since its last successful refresh")
    rows: int | None
    last_error: str | None = Field(description="When its latest refresh failed: why")


class DatabaseStatus(BaseModel):
    """The first version's ``database_status``, on PostgreSQL."""

    status: Literal["OK", "WARNING", "ERROR"]
    checked_at: datetime
    database: DatabaseInfo
    tables: dict[str, int] = Field(description="Row count of each table")
    executions: ExecutionCounts
    performance: DailyPerformance
    views: list[ViewStatus]
    warnings: list[str]
    errors: list[str]


TABLES = ("executions", "feedback", "route_recommendations", "telemetry_dead_letters")
STATUS_SQL = f"""\
SELECT now() AS checked_at,
       current_database() AS name,
       pg_database_size(current_database()) AS database_bytes,
       (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM ({leaves()}) t)
           AS executions_bytes,  -- the partitions' when partitioned
       current_setting('server_version') AS server_version,
       (SELECT version_num FROM alembic_version) AS schema_version,
       (SELECT count(*) FROM feedback) AS feedback,
       (SELECT count(*) FROM route_recommendations) AS route_recommendations,
       (SELECT count(*) FROM telemetry_dead_letters) AS telemetry_dead_letters,
       (SELECT count(*) FROM telemetry_dead_letters
        WHERE created_at >= now() - interval '24 hours') AS dead_letters_daily,
       (SELECT count(*) FROM executions) AS total,
       (SELECT min("timestamp") FROM executions) AS first_at,
       (SELECT max("timestamp") FROM executions) AS last_at,
       recent.*
FROM (
    SELECT count(*) FILTER (WHERE "timestamp" >= now() - interval '1 hour') AS recent_1h,
           count(*) FILTER (WHERE "timestamp" >= now() - interval '24 hours') AS daily,
           count(*) AS weekly,
           avg(success::int) FILTER (WHERE "timestamp" >= now() - interval '24 hours')::float8
               AS daily_success_rate,
           avg(duration_seconds) FILTER (WHERE "timestamp" >= now() - interval '24 hours')
               ::float8 AS avg_duration_seconds,
           avg(quality_score) FILTER (WHERE "timestamp" >= now() - interval '24 hours')
               ::float8 AS avg_quality_score
    FROM executions
    WHERE "timestamp" >= now() - interval '7 days'
) AS recent"""
# The latest logged refresh of each view, when it failed (a later success clears it).
FAILED_REFRESHES_SQL = """\
SELECT view_name, error FROM (
    SELECT DISTINCT ON (view_name) view_name, status, error
    FROM view_refresh_log
    ORDER BY view_name, coalesce(finished_at, started_at) DESC, id DESC
) AS latest
WHERE status = 'failed'"""
RECENT_PARTS = frozenset(
    [view.recent.name for view in PUBLIC_VIEWS]
    + [rollup.recent.name for rollup in PUBLIC_ROLLUPS.values()]
)
"""The parts every refresh rewrites (a history part changes only when its seal moves)."""


async def database_status(db: LearningDatabase) -> DatabaseStatus:
    """Row counts, sizes, schema revision, the last hour's, day's and week's executions, the
    views' freshness, and the warnings and errors that follow from them."""
    async with db.connection() as connection:
        row = await connection.fetchrow(STATUS_SQL)
        failed = await _failed_refreshes(connection)
    freshness = await db.view_freshness(consistency="primary")  # the refresh job's own state
    views = [_view(view, failed.get(view["view_name"])) for view in freshness]
    database = DatabaseInfo(
        name=row["name"],
        size_mb=row["database_bytes"] / MB,
        executions_size_mb=row["executions_bytes"] / MB,
        server_version=row["server_version"],
        schema_version=row["schema_version"],
        head_version=migrations.head_revision(),
    )
    executions = ExecutionCounts.model_validate(dict(row))
    performance = DailyPerformance.model_validate(dict(row))
    errors = [f"the last refresh of {name} failed: {error}" for name, error in failed.items()]
    warnings = _warnings(database, executions, performance, views, row["dead_letters_daily"])
    return DatabaseStatus(
        status="ERROR" if errors else "WARNING" if warnings else "OK",
        checked_at=row["checked_at"],
        database=database,
        tables={"executions": row["total"], **{name: row[name] for name in TABLES[1:]}},
        executions=executions,
        performance=performance,
        views=views,
        warnings=warnings,
        errors=errors,
    )


async def _failed_refreshes(connection: asyncpg.Connection) -> dict[str, str]:
    rows = await connection.fetch(FAILED_REFRESHES_SQL)
    return {row["view_name"]: row["error"] or "unknown error" for row in rows}


def _view(view: ViewFreshness, error: str | None) -> ViewStatus:
    age = view["age"]
    return ViewStatus(
        view_name=view["view_name"],
        watermark=view["watermark"],
        last_refreshed_at=view["last_refreshed_at"],
        age_seconds=None if age is None else age.total_seconds(),
        rows=view["rows"],
        last_error=error,
    )


def _warnings(
    database: DatabaseInfo,
    executions: ExecutionCounts,
    performance: DailyPerformance,
    views: list[ViewStatus],
    dead_letters: int,
) -> list[str]:
    """What deserves a look, each in one sentence that says what to do."""
    found = []
    rate, duration = performance.daily_success_rate, performance.avg_duration_seconds
    if rate is not None and rate < LOW_SUCCESS_RATE:
        found.append(
            f"the success rate of the last 24 hours is {rate:.0%} (below {LOW_SUCCESS_RATE:.0%})"
        )
    if duration is not None and duration > SLOW_AVG_DURATION:
        found.append(
            f"the average duration of the last 24 hours is {duration:.0f} s "
            f"(above {SLOW_AVG_DURATION:.0f} s)"
        )
    if executions.total and not executions.daily:
        found.append("no execution was stored in the last 24 hours: is telemetry capture running?")
    if database.size_mb > LARGE_DATABASE_MB:
        found.append(
            f"the database holds {database.size_mb:,.0f} MB (above {LARGE_DATABASE_MB:,.0f} MB): "
            "plan retention (orb-learning retention)"
        )
    if dead_letters:
        found.append(
            f"{dead_letters} telemetry dead letters in the last 24 hours "
            "(telemetry_dead_letters): events that could not become executions"
        )
    stale = sorted(
        view.view_name
        for view in views
        if view.view_name in RECENT_PARTS
        and (view.age_seconds is None or view.age_seconds > STALE_AFTER.total_seconds())
    )
    if stale:
        found.append(
            f"not refreshed in the last {STALE_AFTER.total_seconds() / 3600:g} h: "
            f"{', '.join(stale)} (run orb-learning refresh, or a refresher)"
        )
    return found
