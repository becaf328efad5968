"""Tests of the analytics methods: each answer must equal the same aggregate on the base rows.

The expectations come from independent SQL on ``executions`` (GROUP BY on the rows, with the
window written on UTC wall-clock timestamps) and, for one case per method, from plain Python
over the generated records.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from orb_learning import LearningDatabase, NotInitializedError
from orb_learning.models import ExecutionRecord
from tests import factories as fx

FREQUENT_REPO, RARE_REPO, RARE_SUMMARIES = fx.FREQUENT_REPO, fx.RARE_REPO, fx.RARE_SUMMARIES
MISSING_REPO = "acme/does-not-exist"
REPOS = (None, FREQUENT_REPO, RARE_REPO, MISSING_REPO)
WINDOWS = (0, 1, 7, 30, 45, 365)
PUBLIC_VIEWS = {
    "tier_performance_mv": "repo, model_tier, task_type, date",
    "pool_performance_mv": "pool_type, repo, hour",
    "solution_patterns_mv": "pattern_id, repo",
    "tier_performance_all_repos_mv": "date, model_tier, task_type",
    "pool_performance_all_repos_mv": "hour, pool_type",
}
# Each public view is a plain view over two materialized parts with its unique key, but
# solution_patterns_mv: the materialized merge of its parts.
VIEWS = {
    **{
        f"{name.removesuffix('_mv')}_{part}_mv": key
        for name, key in PUBLIC_VIEWS.items()
        for part in ("history", "recent")
    },
    "solution_patterns_mv": PUBLIC_VIEWS["solution_patterns_mv"],
}

# -- independent SQL on the base table -------------------------------------------------------


def _since(unit: str) -> str:
    """Rows from the start of the UTC ``unit`` (day/hour) that was ``$1`` days ago."""
    return (
        f"""("timestamp" AT TIME ZONE 'UTC') >= date_trunc('{unit}', """
        f"""(now() AT TIME ZONE 'UTC') - $1::int * interval '1 day')"""
    )


_NOT_EXCLUDED = "NOT (task_id = ANY($3::uuid[]))"

EXPECTED_TIERS = f"""
SELECT model_tier, task_type, $2::text AS repo,
       count(*) AS total_executions,
       count(*) FILTER (WHERE success) AS successful_count,
       avg(success::int)::float8 AS success_rate,
       avg(duration_seconds) AS avg_duration,
       avg(actual_cost) AS avg_cost,
       avg(quality_score)::float8 AS avg_quality
FROM executions
WHERE {_since("day")} AND ($2::text IS NULL OR repo = $2::text) AND {_NOT_EXCLUDED}
GROUP BY model_tier, task_type"""

EXPECTED_POOLS = f"""
SELECT pool_type, $2::text AS repo,
       count(*) AS total_tasks,
       count(*) FILTER (WHERE success) AS successful_tasks,
       avg(success::int)::float8 AS success_rate,
       avg(duration_seconds) AS avg_duration,
       avg(actual_cost) AS avg_cost
FROM executions
WHERE {_since("hour")} AND ($2::text IS NULL OR repo = $2::text) AND {_NOT_EXCLUDED}
GROUP BY pool_type"""

EXPECTED_PATTERNS = """
SELECT solution_summary, $1::text AS repo,
       count(*) AS usage_count,
       count(*) FILTER (WHERE success) AS success_count,
       (count(*) FILTER (WHERE success))::float8 / count(*) AS success_rate,
       avg(quality_score)::float8 AS avg_quality,
       array_agg(DISTINCT repo ORDER BY repo) AS repos,
       array_agg(DISTINCT task_type ORDER BY task_type) AS task_types,
       min("timestamp") AS first_seen,
       max("timestamp") AS last_seen,
       md5(solution_summary)::uuid AS pattern_id
FROM executions
WHERE solution_summary IS NOT NULL AND ($1::text IS NULL OR repo = $1::text)
  AND NOT (task_id = ANY($4::uuid[]))
GROUP BY solution_summary
HAVING count(*) >= $2
ORDER BY success_rate DESC, usage_count DESC, solution_summary
LIMIT $3"""


WINDOWED = {  # kind -> (method, expected SQL with $1 days, $2 repo, $3 excluded ids, keys)
    "tiers": ("get_tier_performance", EXPECTED_TIERS, ("model_tier", "task_type")),
    "pools": ("get_pool_performance", EXPECTED_POOLS, ("pool_type",)),
}


async def fetch_dicts(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict]:
    return [dict(row) for row in await conn.fetch(sql, *args)]


# -- independent Python on the records ---------------------------------------------------------


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _groups(records: Iterable[ExecutionRecord], key: Callable) -> dict[Any, list]:
    return {k: list(g) for k, g in itertools.groupby(sorted(records, key=key), key=key)}


def python_window(records, start: datetime, repo, keys: tuple[str, ...], kind: str) -> list[dict]:
    """Rows of ``kind`` (tiers/pools) computed from the records at or after ``start``."""
    total, wins = (
        ("total_executions", "successful_count")
        if kind == "tiers"
        else ("total_tasks", "successful_tasks")
    )
    rows = []
    window = [r for r in records if r.timestamp >= start and repo in (None, r.repo)]
    for key, group in _groups(window, lambda r: tuple(getattr(r, k) for k in keys)).items():
        successes = sum(r.success for r in group)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "repo": repo,
                total: len(group),
                wins: successes,
                "success_rate": successes / len(group),
                "avg_duration": _mean(r.duration_seconds for r in group),
                "avg_cost": _mean(r.actual_cost for r in group),
            }
        )
        if kind == "tiers":
            rows[-1]["avg_quality"] = _mean(r.quality_score for r in group)
    return rows


def python_patterns(records: list[ExecutionRecord], repo, min_usage: int, limit: int) -> list:
    used = [r for r in records if r.solution_summary is not None and repo in (None, r.repo)]
    rows = []
    for summary, group in _groups(used, lambda r: r.solution_summary).items():
        successes = sum(r.success for r in group)
        if len(group) >= min_usage:
            rows.append(
                {
                    "solution_summary": summary,
                    "repo": repo,
                    "usage_count": len(group),
                    "success_count": successes,
                    "success_rate": successes / len(group),
                    "avg_quality": _mean(r.quality_score for r in group),
                    "repos": sorted({r.repo for r in group}),
                    "task_types": sorted({r.task_type for r in group}),
                    "first_seen": min(r.timestamp for r in group),
                    "last_seen": max(r.timestamp for r in group),
                    "pattern_id": uuid.UUID(hashlib.md5(summary.encode()).hexdigest()),
                }
            )
    rows.sort(key=lambda p: (-p["success_rate"], -p["usage_count"], p["solution_summary"]))
    return rows[:limit]


# -- comparison ---------------------------------------------------------------------------------


def _by_key(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    return sorted(rows, key=lambda row: tuple(row[k] for k in keys))


def assert_rows_equal(actual: list[dict], expected: list[dict], context: str) -> None:
    """Same rows in the same order, same keys; counts exact, floats to 1e-9, None as None."""
    assert len(actual) == len(expected), f"{context}: {len(actual)} rows, expected {len(expected)}"
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        where = f"{context}, row {index} ({want})"
        assert set(got) == set(want), where
        for key, value in want.items():
            if value is None:
                assert got[key] is None, f"{where}: {key}={got[key]!r}"
            elif isinstance(value, float):
                assert isinstance(got[key], float), f"{where}: {key}={got[key]!r}"
                assert got[key] == pytest.approx(value, rel=1e-9), f"{where}: {key}"
            else:
                same = isinstance(got[key], type(value)) and got[key] == value
                assert same, f"{where}: {key}={got[key]!r}"


async def db_now(conn: asyncpg.Connection) -> datetime:
    return await conn.fetchval("SELECT now()")


async def on_stable_clock(conn, check: Callable[[datetime], Awaitable[None]]) -> None:
    """Run ``check(now)``; run it again if a UTC hour began meanwhile (the windows moved)."""
    for _ in range(3):
        before = await db_now(conn)
        try:
            await check(before)
            return
        except AssertionError:
            if fx.hour_start(await db_now(conn)) == fx.hour_start(before):
                raise
    pytest.fail("a UTC hour began during each of three attempts")


async def check_window(kind: str, db, conn, repo, days: int, exclude=(), fresh=True) -> None:
    """The method's rows for (repo, days) equal the base-table aggregate (``exclude`` left out)."""
    method, sql, keys = WINDOWED[kind]

    async def check(_: datetime) -> None:
        expected = await fetch_dicts(conn, sql, days, repo, list(exclude))
        actual = await getattr(db, method)(repo=repo, days_back=days, fresh=fresh)
        assert_rows_equal(_by_key(actual, keys), _by_key(expected, keys), f"{kind} {repo} {days}d")

    await on_stable_clock(conn, check)


async def check_patterns(db, conn, repo, min_usage, limit, exclude=(), fresh=True) -> None:
    expected = await fetch_dicts(conn, EXPECTED_PATTERNS, repo, min_usage, limit, list(exclude))
    actual = await db.get_solution_patterns(
        repo=repo, min_usage=min_usage, limit=limit, fresh=fresh
    )
    assert_rows_equal(actual, expected, f"patterns {repo} min_usage={min_usage} limit={limit}")


@pytest.fixture
async def records(db: LearningDatabase, connection: asyncpg.Connection) -> list[ExecutionRecord]:
    """A stored, refreshed history of 1000 executions over 120 days."""
    generated = fx.history(await db_now(connection))
    stored = await db.store_executions(generated, embeddings=fx.unit_vectors(len(generated)))
    assert stored == len(generated)
    await db.refresh_views()
    return generated


# -- tests --------------------------------------------------------------------------------------


async def test_tier_performance_equals_base_table_aggregate(db, connection, records) -> None:
    for repo, days in itertools.product(REPOS, WINDOWS):
        await check_window("tiers", db, connection, repo, days)
    assert await fetch_dicts(connection, EXPECTED_TIERS, 0, None, []), "day-0 window untested"
    assert len(await fetch_dicts(connection, EXPECTED_TIERS, 365, RARE_REPO, [])) >= 6


async def test_pool_performance_equals_base_table_aggregate(db, connection, records) -> None:
    for repo, days in itertools.product(REPOS, WINDOWS):
        await check_window("pools", db, connection, repo, days)
    assert len(await fetch_dicts(connection, EXPECTED_POOLS, 0, None, [])) == 3, "hour 0 untested"


async def test_solution_patterns_equal_base_table_aggregate(db, connection, records) -> None:
    for repo, min_usage, limit in itertools.product(REPOS, (1, 2, 5, 50), (3, 100)):
        await check_patterns(db, connection, repo, min_usage, limit)
    everything = await db.get_solution_patterns(min_usage=1, limit=100)
    assert len(everything) == 25 and any(len(p["repos"]) > 1 for p in everything)
    one_repo = await db.get_solution_patterns(FREQUENT_REPO, min_usage=1, limit=100)
    assert one_repo and all(p["repos"] == [FREQUENT_REPO] for p in one_repo)


async def test_tier_performance_equals_python_aggregate(db, connection, records) -> None:
    async def check(now: datetime) -> None:
        start = fx.day_start(now - timedelta(days=30))
        keys = WINDOWED["tiers"][2]
        expected = python_window(records, start, FREQUENT_REPO, keys, "tiers")
        actual = await db.get_tier_performance(FREQUENT_REPO, 30)
        assert_rows_equal(_by_key(actual, keys), expected, "tiers (python)")
        assert len(actual) == 12

    await on_stable_clock(connection, check)


async def test_pool_performance_equals_python_aggregate(db, connection, records) -> None:
    async def check(now: datetime) -> None:
        for days in (0, 7):  # 7 days: the records at and just before the hour boundary decide
            start = fx.hour_start(now - timedelta(days=days))
            expected = python_window(records, start, None, ("pool_type",), "pools")
            actual = _by_key(await db.get_pool_performance(days_back=days), ("pool_type",))
            assert_rows_equal(actual, expected, f"pools {days} days (python)")

    await on_stable_clock(connection, check)


async def test_solution_patterns_equal_python_aggregate(db, records) -> None:
    for repo, min_usage, limit in ((None, 2, 100), (None, 5, 3), (RARE_REPO, 1, 100)):
        actual = await db.get_solution_patterns(repo=repo, min_usage=min_usage, limit=limit)
        expected = python_patterns(records, repo, min_usage, limit)
        assert_rows_equal(actual, expected, f"patterns {repo} min_usage={min_usage} (python)")


async def watermarked(conn: asyncpg.Connection, records: list[ExecutionRecord]) -> list:
    """Records at or after the views' watermark: in the live tail, not materialized."""
    marks = await conn.fetch(
        "SELECT DISTINCT watermark FROM view_watermarks WHERE view_name LIKE '%\\_recent\\_mv'"
    )
    assert len(marks) == 1, "one refresh moves every view's watermark to the same instant"
    return [r.task_id for r in records if r.timestamp >= marks[0]["watermark"]]


async def test_rows_stored_after_a_refresh_count_live_and_in_the_views_after_the_next(
    db, connection, records
) -> None:
    now = await db_now(connection)
    late = [
        fx.execution(
            random.Random(i),
            now - timedelta(seconds=i),
            repo=FREQUENT_REPO,
            solution_summary="s99: late pattern",
        )
        for i in range(12)
    ]
    await db.store_executions(late, embeddings=fx.unit_vectors(len(late), seed=99))
    unmaterialized = [*await watermarked(connection, records), *(r.task_id for r in late)]
    for kind, repo, days in itertools.product(WINDOWED, (None, FREQUENT_REPO), (0, 30)):
        # fresh=True counts the new rows at once; fresh=False only what the view holds.
        await check_window(kind, db, connection, repo, days, fresh=True)
        await check_window(kind, db, connection, repo, days, unmaterialized, fresh=False)
        sql = WINDOWED[kind][1]
        with_late = await fetch_dicts(connection, sql, days, repo, [])
        assert with_late != await fetch_dicts(connection, sql, days, repo, unmaterialized)
    await check_patterns(db, connection, None, 1, 100, fresh=True)
    await check_patterns(db, connection, None, 1, 100, unmaterialized, fresh=False)
    live = await db.get_solution_patterns(None, min_usage=12, limit=100)
    assert "s99: late pattern" in [p["solution_summary"] for p in live]
    stale = await db.get_solution_patterns(None, min_usage=12, limit=100, fresh=False)
    assert "s99: late pattern" not in [p["solution_summary"] for p in stale]

    await db.refresh_views()
    unmaterialized = await watermarked(connection, [*records, *late])
    for kind, repo, days in itertools.product(WINDOWED, (None, FREQUENT_REPO), (0, 30)):
        await check_window(kind, db, connection, repo, days, fresh=True)
        await check_window(kind, db, connection, repo, days, unmaterialized, fresh=False)
    await check_patterns(db, connection, None, 1, 100, unmaterialized, fresh=False)


async def test_long_windows_and_low_usage_floors_are_honoured(db, connection, records) -> None:
    for kind, days in itertools.product(WINDOWED, (90, 365)):
        await check_window(kind, db, connection, None, days)
    tiers_30, tiers_365 = [await db.get_tier_performance(days_back=d) for d in (30, 365)]
    assert sum(r["total_executions"] for r in tiers_365) == len(records)  # views hold all history
    assert sum(r["total_executions"] for r in tiers_30) < len(records) * 0.4
    pools_90 = await db.get_pool_performance(days_back=90)
    assert len(records) * 0.6 < sum(r["total_tasks"] for r in pools_90) < len(records)
    patterns = await db.get_solution_patterns(min_usage=1, limit=100)
    usage = {p["solution_summary"]: p["usage_count"] for p in patterns}
    assert {s: usage.get(s) for s in RARE_SUMMARIES} == RARE_SUMMARIES
    floor_3 = {p["solution_summary"] for p in await db.get_solution_patterns(None, 3, 100)}
    assert floor_3 >= {s for s, uses in RARE_SUMMARIES.items() if uses >= 3}
    assert floor_3.isdisjoint(s for s, uses in RARE_SUMMARIES.items() if uses < 3)


TIME_METHODS = ("get_tier_performance", "get_pool_performance")
BAD_CALLS = [
    *[(m, {"days_back": v}) for m in TIME_METHODS for v in (-1, "7", 1.5, True, None)],
    *[
        ("get_solution_patterns", kwargs)
        for kwargs in (
            {"min_usage": -1},
            {"min_usage": "5"},
            {"min_usage": 2.0},
            {"limit": 0},
            {"limit": -3},
            {"limit": False},
        )
    ],
    *[(m, {"repo": "acme\x00api"}) for m in (*TIME_METHODS, "get_solution_patterns")],
]


@pytest.mark.parametrize(("method", "kwargs"), BAD_CALLS, ids=[f"{m}-{k}" for m, k in BAD_CALLS])
async def test_bad_arguments_raise_value_error_before_any_sql(method: str, kwargs: dict) -> None:
    never_connected = LearningDatabase("postgresql://nobody@127.0.0.1:9/nowhere")
    with pytest.raises(NotInitializedError):  # a valid call does reach for the database
        await getattr(never_connected, method)()
    with pytest.raises(ValueError):
        await getattr(never_connected, method)(**kwargs)


async def test_empty_store_gives_empty_lists(db) -> None:
    for refreshed in (False, True):
        if refreshed:
            await db.refresh_views()
        for repo in (None, FREQUENT_REPO):
            assert await db.get_tier_performance(repo, 30) == [], refreshed
            assert await db.get_pool_performance(repo, 7) == [], refreshed
            assert await db.get_solution_patterns(repo, min_usage=0, limit=10) == [], refreshed


async def test_restoring_a_task_replaces_its_contribution(db, connection) -> None:
    now = await db_now(connection)
    common = {
        "repo": "solo/repo",
        "model_tier": "opus",
        "task_type": "bugfix",
        "pool_type": "gpu",
        "task_description": "fix the flaky test",
        "routing_confidence": 0.9,
        "cost_estimate": 1.0,
        "solution_summary": "retry the call",
    }
    first = ExecutionRecord(
        **common,
        timestamp=now - timedelta(minutes=10),  # before the watermark: materialized
        success=True,
        duration_seconds=10.0,
        actual_cost=1.0,
        quality_score=80,
    )
    second = ExecutionRecord(
        **common,
        timestamp=now - timedelta(minutes=14),
        success=False,
        duration_seconds=30.0,
        actual_cost=3.0,
    )
    await db.store_executions([first, second], embeddings=fx.unit_vectors(2))
    await db.refresh_views()

    async def summary() -> tuple:
        [tier] = await db.get_tier_performance("solo/repo", 1)
        [pool] = await db.get_pool_performance("solo/repo", 1)
        [pattern] = await db.get_solution_patterns("solo/repo", min_usage=1)
        return (
            *(tier[k] for k in ("total_executions", "successful_count", "avg_cost")),
            tier["avg_quality"],
            pool["total_tasks"],
            pool["successful_tasks"],
            pattern["usage_count"],
            pattern["success_count"],
        )

    assert await summary() == (2, 1, 2.0, 80.0, 2, 1, 2, 1)
    changed = first.model_copy(update={"success": False, "actual_cost": 5.0, "quality_score": 40})
    await db.store_executions([changed], embeddings=fx.unit_vectors(1))
    # An update of a row older than the watermark shows from the next refresh on.
    assert await summary() == (2, 1, 2.0, 80.0, 2, 1, 2, 1)
    await db.refresh_views()
    assert await summary() == (2, 0, 4.0, 40.0, 2, 0, 2, 0)
    assert await connection.fetchval("SELECT count(*) FROM executions") == 2
    moved = second.model_copy(update={"timestamp": now - timedelta(days=100)})
    await db.store_executions([moved], embeddings=fx.unit_vectors(1))
    await db.refresh_views()
    assert (await db.get_tier_performance("solo/repo", 30))[0]["total_executions"] == 1
    assert (await db.get_tier_performance("solo/repo", 365))[0]["total_executions"] == 2
    for kind, days in itertools.product(WINDOWED, (0, 30, 365)):
        await check_window(kind, db, connection, "solo/repo", days)


async def test_views_are_materialized_with_unique_index_and_comment(db, connection) -> None:
    matviews = await connection.fetch(
        "SELECT matviewname FROM pg_matviews WHERE schemaname = current_schema()"
    )
    assert {r["matviewname"] for r in matviews} == set(VIEWS)
    for name, columns in VIEWS.items():
        unique = await connection.fetch(  # whole-table unique indexes: what CONCURRENTLY needs
            "SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index "
            "WHERE indrelid = $1::regclass AND indisunique AND indpred IS NULL",
            name,
        )
        assert any(r["d"].endswith(f"({columns})") for r in unique), (name, unique)
        comment = await connection.fetchval(
            "SELECT obj_description($1::regclass, 'pg_class')", name
        )
        assert comment and "REFRESH MATERIALIZED VIEW CONCURRENTLY" in comment, name


async def test_windows_do_not_depend_on_the_session_time_zone(
    db, connection, database_url, embedder
) -> None:
    """Whole UTC buckets: a server in a DST time zone must give the same windows."""
    now, zone = await db_now(connection), ZoneInfo("America/New_York")

    def offset(moment: datetime) -> Any:
        return moment.astimezone(zone).utcoffset()

    # a window across a DST change of that zone: local "N days ago" is N*24h +- 1h ago
    days = next(d for d in range(1, 367) if offset(now) != offset(now - timedelta(days=d)))
    starts = (fx.hour_start(now - timedelta(days=days)), fx.day_start(now - timedelta(days=days)))
    moments = [s + timedelta(minutes=m) for s in starts for m in (-30, 30)]
    rows = [fx.execution(random.Random(i), t, repo="tz/repo") for i, t in enumerate(moments)]
    await db.store_executions(rows, embeddings=fx.unit_vectors(len(rows)))
    await db.refresh_views()
    name = await connection.fetchval("SELECT current_database()")
    await connection.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'")
    new_york = LearningDatabase(database_url, embedder=embedder)
    await new_york.initialize()
    try:
        async with new_york._connection() as session:
            assert await session.fetchval("SHOW timezone") == "America/New_York"
        for kind in WINDOWED:
            await check_window(kind, new_york, connection, "tz/repo", days)
    finally:
        await new_york.close()
