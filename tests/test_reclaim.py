"""After a large delete: the HNSW index rebuilt concurrently (a new index, valid, walked by
search, holding exactly the live rows, with writes going on during the rebuild), then
VACUUM; the choice by the deleted share; leftovers of a failed rebuild dropped; retention
and the command line. Real server, real index."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from orb_learning import LearningDatabase, reclaim
from orb_learning.bulk import VECTOR_INDEX
from orb_learning.retention import Retention
from tests.test_bulk import index_state
from tests.test_store import make_record, unit_vectors

INDEX_OID = "SELECT to_regclass($1)::oid"
WALK = "SELECT task_id FROM executions ORDER BY embedding <=> $1::halfvec LIMIT 100000"
LAST_VACUUM = "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'executions'"


async def store(db: LearningDatabase, count: int, *, seed: int, days_ago: int = 0) -> list[str]:
    stamp = datetime.now(UTC) - timedelta(days=days_ago)
    records = [make_record(task_description=f"task {seed}-{i}", timestamp=stamp)
               for i in range(count)]  # fmt: skip
    await db.store_executions(records, embeddings=unit_vectors(count, seed))
    return [str(r.task_id) for r in records]


async def hnsw_ids(connection: asyncpg.Connection) -> set[str]:
    """Every task_id the HNSW index returns, walking it with the widest iterative scan."""
    async with connection.transaction():
        await connection.execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL hnsw.iterative_scan = relaxed_order; "
            "SET LOCAL hnsw.ef_search = 1000; SET LOCAL hnsw.max_scan_tuples = 1000000"
        )
        query = unit_vectors(1, 99)[0].tolist()
        plan = await connection.fetch(f"EXPLAIN {WALK}", query)
        assert VECTOR_INDEX in "\n".join(r[0] for r in plan)
        rows = await connection.fetch(WALK, query)
    return {str(r[0]) for r in rows}


def test_the_rebuild_is_chosen_from_the_deleted_share_and_the_memory() -> None:
    gb = 2**30
    fits = {"index_bytes": int(1.17 * gb), "memory_bytes": 2 * gb}  # 1M rows, 2GB
    assert not reclaim.should_rebuild(0, 1_000_000, **fits)
    assert not reclaim.should_rebuild(5_000, 1_000_000, **fits)
    assert reclaim.should_rebuild(6_000, 1_000_000, **fits)
    assert reclaim.should_rebuild(10_000, 1_010_000, **fits)  # VACUUM alone took 851 s
    assert not reclaim.should_rebuild(999, 100_000, **fits)
    assert reclaim.should_rebuild(1_000, 100_000, **fits)
    assert reclaim.rebuild_fraction(1_000) == reclaim.rebuild_fraction(100_000) == 0.01
    assert reclaim.rebuild_fraction(1_000_000) == pytest.approx(0.00562, abs=1e-5)
    assert reclaim.should_rebuild(5, 0, index_bytes=0, memory_bytes=gb)  # never analyzed
    spills = {"index_bytes": 10 * gb, "memory_bytes": 2 * gb}  # 9M rows
    assert not reclaim.should_rebuild(100_000, 9_000_000, **spills)
    assert reclaim.should_rebuild(8_000_000, 9_000_000, **spills)  # what is left fits


async def test_a_rebuild_replaces_the_index_with_one_over_the_live_rows(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    kept = await store(db, 600, seed=1)
    doomed = await store(db, 400, seed=2)
    await connection.execute("DELETE FROM executions WHERE task_id = ANY($1::uuid[])", doomed)
    before = await connection.fetchval(INDEX_OID, VECTOR_INDEX)

    outcome = await reclaim.after_delete(db, deleted_rows=len(doomed), maintenance_work_mem="64MB")

    assert outcome.rebuilt_index and outcome.deleted_rows == 400
    assert outcome.rebuild_seconds > 0 and outcome.vacuum_seconds > 0
    assert await connection.fetchval(INDEX_OID, VECTOR_INDEX) != before
    state = await index_state(connection)
    assert state is not None and state["indisvalid"] and state["indisready"]
    assert await hnsw_ids(connection) == set(kept)
    assert await connection.fetchval(LAST_VACUUM) is not None


async def test_a_small_delete_is_only_vacuumed(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    kept = await store(db, 1_000, seed=3)
    await connection.execute("ANALYZE executions")  # the planner's count: 1,000 rows
    gone = kept.pop()
    await connection.execute("DELETE FROM executions WHERE task_id = $1::uuid", gone)
    before = await connection.fetchval(INDEX_OID, VECTOR_INDEX)

    outcome = await reclaim.after_delete(db, deleted_rows=1)

    assert not outcome.rebuilt_index and outcome.table_rows == 1_000
    assert await connection.fetchval(INDEX_OID, VECTOR_INDEX) == before
    assert await hnsw_ids(connection) == set(kept)
    assert await connection.fetchval(LAST_VACUUM) is not None


async def test_writes_during_the_rebuild_land_in_the_new_index(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    kept = await store(db, 2_000, seed=4)

    async def write_meanwhile() -> list[str]:
        written: list[str] = []
        for batch in range(10):
            written += await store(db, 50, seed=100 + batch)
        return written

    rebuilding = asyncio.create_task(reclaim.after_delete(db, deleted_rows=0, rebuild=True))
    written = await write_meanwhile()
    outcome = await rebuilding

    assert outcome.rebuilt_index
    state = await index_state(connection)
    assert state is not None and state["indisvalid"]
    assert await hnsw_ids(connection) == set(kept) | set(written)


async def test_the_leftover_of_a_failed_rebuild_is_dropped_first(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    await store(db, 20, seed=5)
    leftover = f"{VECTOR_INDEX}_ccnew"
    with pytest.raises(asyncpg.UniqueViolationError):  # fails, leaving an invalid index
        await connection.execute(
            f"CREATE UNIQUE INDEX CONCURRENTLY {leftover} ON executions (repo)"
        )
    assert await connection.fetchval("SELECT to_regclass($1)", leftover) is not None

    outcome = await reclaim.after_delete(db, deleted_rows=0, rebuild=True)

    assert outcome.dropped_leftovers == 1 and outcome.rebuilt_index
    assert await connection.fetchval("SELECT to_regclass($1)", leftover) is None
    assert await connection.fetchval("SELECT to_regclass($1)", VECTOR_INDEX) is not None


async def test_a_missing_index_is_built(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    kept = await store(db, 100, seed=6)
    await connection.execute(f"DROP INDEX {VECTOR_INDEX}")

    assert (await reclaim.after_delete(db, deleted_rows=0, rebuild=True)).rebuilt_index
    assert await hnsw_ids(connection) == set(kept)


async def test_retention_rebuilds_after_a_large_purge_and_can_leave_it_to_autovacuum(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    recent = await store(db, 300, seed=7, days_ago=1)
    await store(db, 100, seed=8, days_ago=200)
    await connection.execute("ANALYZE executions")
    before = await connection.fetchval(INDEX_OID, VECTOR_INDEX)

    untouched = await Retention(db, days_to_keep=300, batch_size=40).run()
    assert untouched.deleted_count == 0 and untouched.reclaimed is None

    result = await Retention(db, days_to_keep=90, batch_size=40).run()

    assert result.deleted_count == 100 and result.reclaimed is not None
    assert result.reclaimed.rebuilt_index and result.to_dict()["reclaimed"]["rebuilt_index"]
    assert await connection.fetchval(INDEX_OID, VECTOR_INDEX) != before
    assert await hnsw_ids(connection) == set(recent)

    await store(db, 10, seed=9, days_ago=200)
    skipped = await Retention(db, days_to_keep=90, reclaim=False).run()
    assert skipped.deleted_count == 10 and skipped.reclaimed is None


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    command = [sys.executable, "-m", "orb_learning.cli", "--dsn", url, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


async def test_the_commands(
    db: LearningDatabase, database_url: str, connection: asyncpg.Connection
) -> None:
    kept = await store(db, 200, seed=10, days_ago=1)
    await store(db, 50, seed=11, days_ago=200)
    before = await connection.fetchval(INDEX_OID, VECTOR_INDEX)

    purge = run_cli(database_url, "retention", "--keep-days", "90")
    assert purge.returncode == 0, purge.stderr
    assert "Deleted 50 executions" in purge.stdout
    assert "Rebuilt the HNSW index in" in purge.stdout and "vacuumed the table" in purge.stdout
    rebuilt = await connection.fetchval(INDEX_OID, VECTOR_INDEX)
    assert rebuilt != before

    vacuum = run_cli(database_url, "db", "vacuum")
    assert vacuum.returncode == 0, vacuum.stderr
    assert vacuum.stdout.startswith("Vacuumed the table in")
    assert await connection.fetchval(INDEX_OID, VECTOR_INDEX) == rebuilt

    full = run_cli(database_url, "db", "vacuum", "--rebuild-index")
    assert full.returncode == 0, full.stderr
    assert "Rebuilt the HNSW index" in full.stdout
    assert await connection.fetchval(INDEX_OID, VECTOR_INDEX) != rebuilt
    assert await hnsw_ids(connection) == set(kept)
    assert np.isfinite(float(purge.stdout.split("index in ")[1].split(" s")[0]))

    after_full = await connection.fetchval(INDEX_OID, VECTOR_INDEX)
    await store(db, 50, seed=12, days_ago=200)
    skipped = run_cli(database_url, "retention", "--keep-days", "90", "--no-reclaim")
    assert skipped.returncode == 0, skipped.stderr
    assert "Deleted 50 executions" in skipped.stdout and "vacuumed" not in skipped.stdout
    assert await connection.fetchval(INDEX_OID, VECTOR_INDEX) == after_full  # not rebuilt
    assert await hnsw_ids(connection) == set(kept)
