"""The sealed history (revision 0007): the periodic refresh leaves the history parts alone,
the seal advance and late rows (written, changed or deleted before the seal) reach the
answers at the next refresh, and the names users read keep their contents."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import datetime, timedelta

import asyncpg
import pytest

from orb_learning import LearningDatabase
from orb_learning._catalog import PUBLIC_VIEWS
from orb_learning._views import POOL_PERFORMANCE_V1, SOLUTION_PATTERNS_V1, TIER_PERFORMANCE_V1
from tests import factories as fx
from tests.test_analytics import (
    FREQUENT_REPO,
    WINDOWED,
    check_patterns,
    check_window,
    db_now,
)

HISTORY = sorted(view.history.name for view in PUBLIC_VIEWS)
RECENT = sorted(view.recent.name for view in PUBLIC_VIEWS)
DIRTY_ABLE = ["pool_performance_history_mv", "solution_patterns_history_mv",
              "tier_performance_history_mv"]  # fmt: skip


async def dirty(connection: asyncpg.Connection) -> list[str]:
    rows = await connection.fetch("SELECT view_name FROM view_history_dirty ORDER BY 1")
    return [row[0] for row in rows]


async def seal(connection: asyncpg.Connection) -> datetime:
    marks = await connection.fetch(
        "SELECT DISTINCT watermark FROM view_watermarks WHERE view_name LIKE '%\\_history\\_mv'"
    )
    assert len(marks) == 1
    mark: datetime = marks[0][0]
    return mark


@pytest.fixture
async def records(db: LearningDatabase, connection: asyncpg.Connection) -> list:
    """1000 executions over 120 days, stored and refreshed (the history sealed)."""
    generated = fx.history(await db_now(connection))
    await db.store_executions(generated, embeddings=fx.unit_vectors(len(generated)))
    await db.refresh_views()
    return generated


async def check_all(db: LearningDatabase, connection, exclude=(), fresh=True) -> None:
    """Every method, over all repos and the frequent one, equals the base rows' aggregate
    (``exclude``: rows the views do not count yet)."""
    for kind, repo, days in itertools.product(WINDOWED, (None, FREQUENT_REPO), (0, 7, 30, 365)):
        await check_window(kind, db, connection, repo, days, exclude, fresh=fresh)
    for repo in (None, FREQUENT_REPO):
        await check_patterns(db, connection, repo, 1, 100, exclude, fresh=fresh)


async def test_the_periodic_refresh_leaves_the_sealed_history_alone(
    db: LearningDatabase, connection: asyncpg.Connection, records
) -> None:
    now = await db_now(connection)
    assert await seal(connection) == fx.day_start(now - timedelta(days=2))
    logged = await connection.fetchval("SELECT count(*) FROM view_refresh_log")
    results = await db.refresh_views()
    status = {r.view_name: r.status for r in results}
    assert {status[name] for name in RECENT} == {"success"}
    history = {name: status[name] for name in status if "_history_" in name}
    assert set(history.values()) == {"sealed"} and len(history) == len(PUBLIC_VIEWS)
    new_log = await connection.fetch(
        "SELECT view_name, status FROM view_refresh_log ORDER BY id OFFSET $1", logged
    )
    refreshed = sorted(name for name in status if "_history_" not in name)
    assert refreshed == sorted([*RECENT, "solution_patterns_mv"])  # and the patterns' merge
    assert {status[name] for name in refreshed} == {"success"}
    # a sealed history is not logged: it was not refreshed
    assert sorted(r["view_name"] for r in new_log) == refreshed
    await check_all(db, connection)


async def test_answers_hold_across_a_seal_advance(
    db: LearningDatabase, connection: asyncpg.Connection, records
) -> None:
    """As at the first refresh after midnight UTC: the history one day short of the seal,
    then a refresh moves it (the recent parts give that day up)."""
    sealed_at = await seal(connection)
    await connection.execute(
        "UPDATE view_watermarks SET watermark = watermark - interval '1 day' "
        "WHERE view_name LIKE '%\\_history\\_mv'"
    )
    for view in PUBLIC_VIEWS:  # rebuilt a day short, by hand
        for part in view.parts:
            await connection.execute(f"REFRESH MATERIALIZED VIEW {part.name}")
    short = await connection.fetchval("SELECT count(*) FROM tier_performance_recent_mv")
    await check_all(db, connection)
    results = await db.refresh_views()
    assert {r.status for r in results} == {"success"}  # every part, history included
    assert await seal(connection) == sealed_at
    assert await connection.fetchval("SELECT count(*) FROM tier_performance_recent_mv") < short
    await check_all(db, connection)
    await check_all(db, connection, fresh=False, exclude=await unmaterialized(connection, records))


async def unmaterialized(connection: asyncpg.Connection, records) -> list:
    mark = await connection.fetchval(
        "SELECT watermark FROM view_watermarks WHERE view_name = 'tier_performance_recent_mv'"
    )
    return [r.task_id for r in records if r.timestamp >= mark]


def old_rows(now: datetime, days: int, n: int = 6, **overrides) -> list:
    return [
        fx.execution(random.Random(1000 + i), now - timedelta(days=days, minutes=i), **overrides)
        for i in range(n)
    ]


async def test_late_rows_before_the_seal_count_from_the_next_refresh(
    db: LearningDatabase, connection: asyncpg.Connection, records
) -> None:
    now = await db_now(connection)
    late = old_rows(now, 20, repo=FREQUENT_REPO, solution_summary="s98: a late pattern")
    await db.store_executions(late, embeddings=fx.unit_vectors(len(late), seed=3))
    assert await dirty(connection) == DIRTY_ABLE
    # Until the next refresh they are not counted, fresh=True included (documented): the
    # answers equal the base rows without them.
    late_ids = [r.task_id for r in late]
    await check_all(db, connection, exclude=late_ids)
    results = await db.refresh_views()
    assert {r.view_name for r in results if r.status == "success"} >= set(HISTORY)
    assert await dirty(connection) == []
    await check_all(db, connection)

    # Deleting old rows (retention does) marks the history too.
    gone = [r.task_id for r in records if r.timestamp < now - timedelta(days=60)][:25]
    await connection.execute("DELETE FROM executions WHERE task_id = ANY($1::uuid[])", gone)
    assert await dirty(connection) == DIRTY_ABLE
    # Until the next refresh the history still counts them, fresh=True included.
    assert await total(db, fresh=True) == await direct_total(connection) + len(gone)
    await db.refresh_views()
    assert await dirty(connection) == []
    await check_all(db, connection)


async def total(db: LearningDatabase, *, fresh: bool) -> int:
    rows = await db.get_tier_performance(days_back=365, fresh=fresh)
    return sum(r["total_executions"] for r in rows)


async def direct_total(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM executions WHERE \"timestamp\" >= date_trunc('day', "
        "now() - interval '365 days', 'UTC')"
    )
    return count


async def test_the_trigger_marks_only_writes_before_the_seal(
    db: LearningDatabase, connection: asyncpg.Connection, records
) -> None:
    now = await db_now(connection)
    fresh_rows = old_rows(now, 0) + old_rows(now, 1)  # today and yesterday: after the seal
    await db.store_executions(fresh_rows, embeddings=fx.unit_vectors(len(fresh_rows)))
    assert await dirty(connection) == []
    old = next(r for r in records if r.timestamp < now - timedelta(days=30))
    # a column no view reads: nothing to rebuild
    await connection.execute(
        "UPDATE executions SET user_rating = 4 WHERE task_id = $1", old.task_id
    )
    await connection.execute(
        "UPDATE executions SET task_description = 'x' "
        "WHERE \"timestamp\" < now() - interval '90 days'"
    )
    assert await dirty(connection) == []
    # a column the views read
    await connection.execute(
        "UPDATE executions SET success = NOT success WHERE task_id = $1", old.task_id
    )
    assert await dirty(connection) == DIRTY_ABLE
    since = await connection.fetchval("SELECT min(since) FROM view_history_dirty")
    assert since == old.timestamp
    # an older write lowers the mark, a newer one leaves it
    older = old_rows(now, 100, n=1)
    await db.store_executions(older, embeddings=fx.unit_vectors(1))
    assert await connection.fetchval("SELECT max(since) FROM view_history_dirty") == (
        older[0].timestamp
    )
    await db.store_executions(old_rows(now, 10, n=1), embeddings=fx.unit_vectors(1))
    assert await connection.fetchval("SELECT max(since) FROM view_history_dirty") == (
        older[0].timestamp
    )
    await db.refresh_views()
    assert await dirty(connection) == []
    await check_all(db, connection)


async def test_truncate_marks_every_history(
    db: LearningDatabase, connection: asyncpg.Connection, records
) -> None:
    await connection.execute("TRUNCATE executions CASCADE")
    assert await dirty(connection) == DIRTY_ABLE
    await db.refresh_views()
    for view in PUBLIC_VIEWS:
        assert await connection.fetchval(f"SELECT count(*) FROM {view.name}") == 0


async def test_a_writer_of_old_rows_and_a_seal_advance_never_lose_a_row(
    db: LearningDatabase, connection: asyncpg.Connection, database_url: str, records
) -> None:
    """A row written while the refresh moves the seal past it is either in the history it
    builds (the refresh waits for the writer) or marks that history dirty."""
    await connection.execute(
        "UPDATE view_watermarks SET watermark = watermark - interval '3 days' "
        "WHERE view_name LIKE '%\\_history\\_mv'"
    )  # the next refresh moves the seal by three days
    now = await db_now(connection)
    writer = await asyncpg.connect(database_url)
    try:
        transaction = writer.transaction()
        await transaction.start()
        # stamped between the old seal and the new one: after the seal as this writer sees it
        await writer.execute(
            'INSERT INTO executions (task_id, "timestamp", task_type, task_description, '
            "repo, model_tier, pool_type, routing_confidence, success, duration_seconds, "
            "cost_estimate, actual_cost) VALUES (gen_random_uuid(), $1, 'bugfix', 'late', "
            "'acme/late', 'haiku', 'gpu', 0.5, true, 1, 0, 0)",
            fx.day_start(now) - timedelta(days=3, hours=-1),
        )
        refreshing = asyncio.ensure_future(db.refresh_views())
        await asyncio.sleep(1.0)
        assert not refreshing.done(), "the seal moved while a writer held a row before it"
        await transaction.commit()
        await asyncio.wait_for(refreshing, timeout=60)
    finally:
        await writer.close()
    rows = await db.get_tier_performance("acme/late", days_back=30, fresh=False)
    assert [r["total_executions"] for r in rows] == [1]


async def test_public_views_hold_what_the_old_views_held(
    db: LearningDatabase, connection: asyncpg.Connection, records
) -> None:
    """Each plain view equals revision 0006's definition over the rows before the
    watermark: same columns, same values (the patterns' merge of both parts included)."""
    await db.store_executions(old_rows(await db_now(connection), 1), embeddings=fx.unit_vectors(6))
    await db.refresh_views()
    mark = await connection.fetchval(
        "SELECT watermark FROM view_watermarks WHERE view_name = 'tier_performance_recent_mv'"
    )
    for old, keys in (
        (TIER_PERFORMANCE_V1, "repo, model_tier, task_type, date"),
        (POOL_PERFORMANCE_V1, "pool_type, repo, hour"),
        (SOLUTION_PATTERNS_V1, "pattern_id, repo"),
    ):
        select = old.select.removesuffix("WITH DATA").replace(
            "FROM executions\n", 'FROM (SELECT * FROM executions WHERE "timestamp" < $1) e\n'
        )
        expected = [dict(r) for r in await connection.fetch(f"{select} ORDER BY {keys}", mark)]
        actual = [
            dict(r) for r in await connection.fetch(f"SELECT * FROM {old.name} ORDER BY {keys}")
        ]
        assert [list(r) for r in actual[:1]] == [list(r) for r in expected[:1]], old.name
        assert len(actual) == len(expected), old.name
        for got, want in zip(actual, expected, strict=True):
            for column, value in want.items():
                if isinstance(value, float):
                    assert got[column] == pytest.approx(value, rel=1e-9), (old.name, column)
                else:
                    assert got[column] == value, (old.name, column)


async def test_a_window_reads_the_time_index_of_both_parts(
    db: LearningDatabase, connection: asyncpg.Connection, records
) -> None:
    """The window's predicate reaches both branches of the UNION ALL."""
    for view, column in (("tier_performance_mv", "date"), ("pool_performance_mv", "hour")):
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(
                r[0]
                for r in await connection.fetch(
                    f"EXPLAIN SELECT sum(1) FROM {view} WHERE {column} >= now() - interval '7 days'"
                )
            )
        base = view.removesuffix("_mv")
        for part in ("history", "recent"):
            assert f"idx_{base}_{part}_mv_{column}" in plan, plan
