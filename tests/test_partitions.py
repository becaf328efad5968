"""Time partitions (revision 0011, on request): task_id stays unique across partitions, under
concurrency and whoever writes; the default partition catches what no partition covers and
``create_partitions`` moves it out; searches across partitions answer the global top k; the
conversion of one table is batched, resumable and undone by the downgrade.

Every test here runs on a database converted by ``convert_table`` (``database_url`` below)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from orb_learning import FeedbackRecord, LearningDatabase, _search as search, bulk
from orb_learning.errors import ArgumentError
from orb_learning.partitions import convert_table, create_partitions, list_partitions
from tests.conftest import fresh_database
from tests.test_store import make_record, unit_vectors

NOW = datetime.now(UTC)


@pytest.fixture
async def database_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    """A migrated database whose executions is partitioned (``db partitions --convert``)."""
    async with fresh_database(server_url) as url:
        assert await convert_table(url)
        assert not await convert_table(url)  # a second call finds it done
        yield url


async def where(connection: asyncpg.Connection, task_id: uuid.UUID) -> list[tuple[str, datetime]]:
    rows = await connection.fetch(
        'SELECT tableoid::regclass::text AS part, "timestamp" FROM executions WHERE task_id = $1',
        task_id,
    )
    return [(r["part"], r["timestamp"]) for r in rows]


async def test_a_retry_with_another_timestamp_moves_the_one_row_and_keeps_its_feedback(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    task_id = uuid.uuid4()
    vector = unit_vectors(1)[0]
    await db.store_execution(make_record(task_id=task_id, timestamp=NOW), embedding=vector)
    await db.store_feedback(FeedbackRecord(task_id=task_id, feedback_type="rating", rating=2))
    earlier = NOW - timedelta(days=62)
    await db.store_executions(
        [make_record(task_id=task_id, timestamp=earlier)], embeddings=[vector]
    )
    [(part, stamp)] = await where(connection, task_id)
    assert (part, stamp) == ("executions_default", earlier)  # no partition that far back yet
    key = await connection.fetchval(
        'SELECT "timestamp" FROM execution_keys WHERE task_id = $1', task_id
    )
    assert key == earlier
    assert await connection.fetchval("SELECT count(*) FROM feedback WHERE task_id = $1", task_id)
    assert await connection.fetchval(
        "SELECT user_rating FROM executions WHERE task_id = $1", task_id
    ) == 2  # fmt: skip


async def test_concurrent_writers_of_one_task_id_store_it_once(
    database_url: str, embedder: object
) -> None:
    """Twelve writers, each its own connection, the same task_ids with twelve timestamps
    spread over a year (so over many partitions and the default one)."""
    ids = [uuid.uuid4() for _ in range(20)]
    vectors = unit_vectors(20, seed=3)
    writers = [LearningDatabase(database_url, embedder=embedder) for _ in range(4)]
    try:
        for writer in writers:
            await writer.initialize()

        async def write(round_number: int) -> None:
            stamp = NOW - timedelta(days=31 * round_number)
            records = [make_record(task_id=i, timestamp=stamp) for i in ids]
            await writers[round_number % 4].store_executions(records, embeddings=vectors)

        await asyncio.gather(*(write(n) for n in range(12)))
    finally:
        for writer in writers:
            await writer.close()
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM executions") == 20
        assert await connection.fetchval("SELECT count(DISTINCT task_id) FROM executions") == 20
        mismatched = await connection.fetchval(
            "SELECT count(*) FROM executions e JOIN execution_keys k USING (task_id) "
            'WHERE k."timestamp" <> e."timestamp"'
        )
        assert mismatched == 0
        assert await connection.fetchval("SELECT count(*) FROM execution_keys") == 20
    finally:
        await connection.close()


async def test_a_plain_insert_of_a_stored_task_id_fails_and_a_delete_frees_it(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    task_id = uuid.uuid4()
    await db.store_execution(
        make_record(task_id=task_id, timestamp=NOW), embedding=unit_vectors(1)[0]
    )
    insert = (
        'INSERT INTO executions (task_id, "timestamp", task_type, task_description, repo, '
        "model_tier, pool_type, routing_confidence, success, duration_seconds, cost_estimate, "
        "actual_cost) VALUES ($1, $2, 't', 'd', 'r', 'm', 'p', 0.5, true, 1, 0, 0)"
    )
    with pytest.raises(asyncpg.UniqueViolationError, match=f"task_id {task_id} is already stored"):
        await connection.execute(insert, task_id, NOW - timedelta(days=40))
    await connection.execute("DELETE FROM executions WHERE task_id = $1", task_id)
    assert await connection.fetchval("SELECT count(*) FROM execution_keys") == 0
    await connection.execute(insert, task_id, NOW - timedelta(days=40))
    assert len(await where(connection, task_id)) == 1


async def test_rows_outside_every_partition_wait_in_the_default_one_until_moved(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    old = datetime(2024, 3, 15, 12, tzinfo=UTC)
    task_id = uuid.uuid4()
    await db.store_execution(
        make_record(task_id=task_id, timestamp=old), embedding=unit_vectors(1)[0]
    )
    assert (await where(connection, task_id))[0][0] == "executions_default"
    created = await create_partitions(connection)
    assert [(c.name, c.moved_rows) for c in created] == [("executions_2024_03", 1)]
    assert (await where(connection, task_id))[0][0] == "executions_2024_03"
    listed = {p.name: p for p in await list_partitions(connection)}
    assert listed["executions_2024_03"].range_start == datetime(2024, 3, 1, tzinfo=UTC)
    assert listed["executions_2024_03"].period == "month"
    assert listed["executions_default"].is_default
    assert f"executions_{NOW:%Y_%m}" in listed  # the migration's: this month and three ahead
    indexes = await connection.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'executions_2024_03'"
    )
    assert "idx_executions_embedding_hnsw_2024_03" in {r[0] for r in indexes}
    assert await create_partitions(connection) == []  # nothing left to do
    weekly = await create_partitions(connection, every="week", ahead=0)
    assert weekly == []  # this week lies in this month's partition: never an overlap
    with pytest.raises(ArgumentError, match="every must be one of day, week, month"):
        await create_partitions(connection, every="year")
    with pytest.raises(ArgumentError, match="ahead"):
        await create_partitions(connection, ahead=-1)


async def test_a_search_across_partitions_is_the_global_top_k_and_prunes_by_window(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    vectors = unit_vectors(3_000, seed=5)
    records = [
        make_record(timestamp=NOW - timedelta(days=(n % 150), minutes=n)) for n in range(3_000)
    ]
    await db.store_executions(records, embeddings=vectors)
    await create_partitions(connection)  # the older months, out of the default partition
    await connection.execute("ANALYZE executions")
    query = unit_vectors(1, seed=99)[0]
    stored = vectors.astype(np.float16).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    ages = np.array([(NOW - r.timestamp).total_seconds() / 86_400 for r in records])
    for days_back in (7, 30, 90, None):
        inside = np.ones(len(records), bool) if days_back is None else ages < days_back - 0.01
        best = np.argsort(-(stored[inside] @ query))[:10]
        expected = {records[i].task_id for i in np.flatnonzero(inside)[best]}
        for exact_max in (0, 10**9):  # the HNSW path, then the exact path
            tuning = search.SearchTuning(exact_search_max_rows=exact_max)
            rows = await search.find_similar(
                connection, query, repo=None, limit=10, days_back=days_back, threshold=-1.0,
                tuning=tuning, estimates=search.PlannerEstimates(),
            )  # fmt: skip
            found = {r["task_id"] for r in rows}
            assert len(found & expected) >= 9, (days_back, exact_max)
            similarities = [r["similarity"] for r in rows]
            assert similarities == sorted(similarities, reverse=True)
    plan = "\n".join(
        r[0]
        for r in await connection.fetch(
            "EXPLAIN SELECT task_id FROM executions "
            'WHERE "timestamp" >= now() - make_interval(hours => 24 * 7)'
        )
    )
    assert f"executions_{NOW:%Y_%m}" in plan
    old_month = NOW - timedelta(days=120)
    assert f"executions_{old_month:%Y_%m}" not in plan  # pruned


async def test_a_bulk_load_of_history_gives_its_months_partitions_of_their_own(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    """Without the move after each batch a year of history would sit in the default
    partition; the HNSW index is built on every month's partition at the end."""
    records = [make_record(timestamp=NOW - timedelta(days=3 * n)) for n in range(120)]
    batches = [(records[i : i + 40], unit_vectors(40, seed=i)) for i in range(0, 120, 40)]
    stats = await bulk.bulk_load(db, batches)
    assert (stats.rows, stats.moved_rows > 0) == (120, True)
    assert await connection.fetchval("SELECT count(*) FROM executions_default") == 0
    months = {f"executions_{r.timestamp:%Y_%m}" for r in records}
    parts = {p.name for p in await list_partitions(connection)}
    assert months <= parts
    indexed = await connection.fetch(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_class x ON x.oid = i.indexrelid "
        "WHERE x.relname LIKE 'idx_executions_embedding_hnsw_%'"
    )
    assert months <= {r["relname"] for r in indexed}
    assert await connection.fetchval("SELECT count(*) FROM executions") == 120


async def test_retention_drops_whole_months_and_deletes_the_edge_row_by_row(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: object
) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from orb_learning.retention import Retention

    vectors = unit_vectors(300, seed=7)
    records = [make_record(timestamp=NOW - timedelta(days=n % 150, hours=1)) for n in range(300)]
    await db.store_executions(records, embeddings=vectors)
    await create_partitions(connection)
    old = next(r for r in records if r.timestamp < NOW - timedelta(days=100))
    await db.store_feedback(FeedbackRecord(task_id=old.task_id, feedback_type="rating", rating=5))
    current = f"idx_executions_embedding_hnsw_{NOW:%Y_%m}"
    filenode = "SELECT pg_relation_filenode(to_regclass($1))"  # a rebuilt index: new files
    current_before = await connection.fetchval(filenode, current)
    retention = Retention(db, days_to_keep=100, archive_path=tmp_path)
    planned = await retention.plan()
    result = await retention.run()
    assert result.reclaimed is not None and result.reclaimed.deleted_rows > 0
    assert await connection.fetchval(filenode, current) == current_before  # not in scope
    assert result.partitions_dropped == planned.partitions_dropped
    assert result.partitions_dropped  # at least one month wholly before the cutoff
    gone = [r for r in records if r.timestamp < retention.cutoff]
    assert result.deleted_count == len(gone) == result.archived_count
    assert 0 < result.partition_rows < len(gone)  # the edge month went row by row
    assert result.feedback_deleted == 1
    left = await connection.fetchval("SELECT count(*) FROM executions")
    assert left == len(records) - len(gone)
    assert await connection.fetchval("SELECT count(*) FROM execution_keys") == left
    assert await connection.fetchval("SELECT count(*) FROM feedback") == 0
    names = {p.name for p in await list_partitions(connection)}
    assert not names & set(result.partitions_dropped)
    archived = sum(pq.read_table(f).num_rows for f in result.archive_files)
    assert archived == len(gone)
    dirty = await connection.fetch("SELECT view_name FROM view_history_dirty")
    assert dirty or not await connection.fetchval(
        "SELECT count(*) FROM view_watermarks WHERE watermark > $1", retention.cutoff
    )


async def test_revision_0011_keeps_one_table_and_a_conversion_partitions_it_in_batches(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revision 0010 with rows and feedback; 0011 in place (one table, its keys filled);
    the conversion in batches of 7 (the committed path of a large table); the downgrade
    from partitions (rows copied back); 0011 again, and its in-place downgrade."""
    from orb_learning import _partition_convert as convert, migrations

    url = empty_database_url
    await migrations.upgrade(url, "0010")
    connection = await asyncpg.connect(url)

    async def shape() -> str:
        kind: str = await connection.fetchval(
            "SELECT relkind::text FROM pg_class WHERE oid = 'executions'::regclass"
        )
        return kind

    try:
        await _insert_0010_rows(connection, 40)
        rated = await connection.fetchval("SELECT task_id FROM executions LIMIT 1")
        await connection.execute(
            'INSERT INTO feedback (feedback_id, task_id, "timestamp", feedback_type, rating) '
            "VALUES (gen_random_uuid(), $1, now(), 'rating', 4)",
            rated,
        )
        await migrations.upgrade(url)
        assert await shape() == "r"
        assert await connection.fetchval("SELECT count(*) FROM execution_keys") == 40
        assert await connection.fetchval("SELECT count(*) FROM feedback") == 1
        assert await create_partitions(connection) == []  # one table: nothing to create

        monkeypatch.setattr(convert, "BATCH_ROWS", 7)
        assert await convert_table(url)
        assert await shape() == "p"
        assert await connection.fetchval("SELECT count(*) FROM executions") == 40
        assert await connection.fetchval("SELECT count(*) FROM execution_keys") == 40
        assert await connection.fetchval("SELECT count(*) FROM feedback") == 1
        months = {p.name for p in await list_partitions(connection) if not p.is_default}
        oldest = NOW - timedelta(days=9 * 39)
        assert f"executions_{oldest:%Y_%m}" in months and len(months) >= 12
        assert await connection.fetchval(
            "SELECT count(*) FROM ONLY executions_default"
        ) == 0  # fmt: skip
        assert await connection.fetchval("SELECT to_regclass('executions_partitioned')") is None
        await connection.execute("DELETE FROM executions WHERE task_id = $1", rated)
        assert await connection.fetchval("SELECT count(*) FROM feedback") == 0  # cascaded

        await migrations.downgrade(url, "0010")
        assert await shape() == "r"
        assert await connection.fetchval("SELECT count(*) FROM executions") == 39
        assert await connection.fetchval("SELECT to_regclass('execution_keys')") is None
        await migrations.upgrade(url)
        assert await connection.fetchval("SELECT count(*) FROM execution_keys") == 39
        await migrations.downgrade(url, "0010")  # in place, from one table
        assert await shape() == "r"
        assert await connection.fetchval("SELECT to_regclass('execution_keys')") is None
        assert await connection.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_feedback_task_id_executions'"
        ) == 1  # fmt: skip
    finally:
        await connection.close()


async def _insert_0010_rows(connection: asyncpg.Connection, rows: int) -> None:
    """``rows`` executions nine days apart, as revision 0010's columns take them."""
    await connection.execute(
        'INSERT INTO executions (task_id, "timestamp", task_type, task_description, repo, '
        "model_tier, pool_type, routing_confidence, success, duration_seconds, "
        "cost_estimate, actual_cost) SELECT gen_random_uuid(), "
        "now() - make_interval(days => 9 * g), 't', 'd', 'r', 'm', 'p', 0.5, true, 1, 0, 0 "
        "FROM generate_series(0, $1 - 1) g",
        rows,
    )


class KilledAfter:
    """The conversion's logger, raising as a killed process would stop after ``batches``
    committed batches (it logs once per batch)."""

    def __init__(self, batches: int) -> None:
        self.left = batches

    def info(self, message: str, *args: object) -> None:
        if "rows copied" in message:
            self.left -= 1
            if self.left <= 0:
                raise RuntimeError("killed mid-conversion")


async def test_an_interrupted_conversion_resumes_after_its_last_batch_with_later_writes(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after two committed batches, the old table still serves reads and writes;
    the next conversion copies only the rest, and the writes made meanwhile (a new row, a
    changed row already copied, a deleted one) are what the partitioned table holds."""
    import logging

    from orb_learning import _partition_convert as convert, migrations

    url = empty_database_url
    await migrations.upgrade(url, "0010")
    connection = await asyncpg.connect(url)
    try:
        await _insert_0010_rows(connection, 30)
        await migrations.upgrade(url)
        monkeypatch.setattr(convert, "BATCH_ROWS", 7)
        monkeypatch.setattr(convert, "logger", KilledAfter(2))
        with pytest.raises(RuntimeError, match="killed mid-conversion"):
            await convert_table(url)
        assert await connection.fetchval(
            "SELECT relkind::text FROM pg_class WHERE oid = 'executions'::regclass"
        ) == "r"  # fmt: skip
        assert await connection.fetchval("SELECT count(*) FROM executions_partitioned") == 14
        copied = await connection.fetchval(
            "SELECT task_id FROM executions_partitioned ORDER BY task_id LIMIT 1"
        )
        gone = await connection.fetchval(
            "SELECT task_id FROM executions_partitioned ORDER BY task_id DESC LIMIT 1"
        )
        await connection.execute("UPDATE executions SET repo = 'moved' WHERE task_id = $1", copied)
        await connection.execute("DELETE FROM executions WHERE task_id = $1", gone)
        await connection.execute(
            'INSERT INTO executions (task_id, "timestamp", task_type, task_description, repo, '
            "model_tier, pool_type, routing_confidence, success, duration_seconds, "
            "cost_estimate, actual_cost) VALUES (gen_random_uuid(), now(), 't', 'd', 'late', "
            "'m', 'p', 0.5, true, 1, 0, 0)"
        )
        monkeypatch.setattr(convert, "logger", logging.getLogger("alembic.orb_learning.partitions"))
        assert await convert_table(url)
        assert await connection.fetchval(
            "SELECT relkind::text FROM pg_class WHERE oid = 'executions'::regclass"
        ) == "p"  # fmt: skip
        assert await connection.fetchval("SELECT count(*) FROM executions") == 30
        assert await connection.fetchval("SELECT count(*) FROM execution_keys") == 30
        assert await connection.fetchval(
            "SELECT repo FROM executions WHERE task_id = $1", copied
        ) == "moved"  # fmt: skip
        assert not await connection.fetchval(
            "SELECT count(*) FROM executions WHERE task_id = $1", gone
        )
        assert await connection.fetchval("SELECT count(*) FROM executions WHERE repo = 'late'") == 1
        assert await connection.fetchval("SELECT to_regclass('executions_partitioned')") is None
    finally:
        await connection.close()


def test_the_partitions_command_creates_moves_and_lists(database_url: str) -> None:
    import json
    import os
    import subprocess
    import sys

    async def insert_old() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(
                'INSERT INTO executions (task_id, "timestamp", task_type, task_description, '
                "repo, model_tier, pool_type, routing_confidence, success, duration_seconds, "
                "cost_estimate, actual_cost) VALUES (gen_random_uuid(), '2023-05-02', 't', "
                "'d', 'r', 'm', 'p', 0.5, true, 1, 0, 0)"
            )
        finally:
            await connection.close()

    asyncio.run(insert_old())
    command = [sys.executable, "-m", "orb_learning.cli", "--dsn", database_url, "db", "partitions"]
    env = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    first = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    shown = json.loads(first.stdout)
    assert [(c["name"], c["moved_rows"]) for c in shown["created"]] == [("executions_2023_05", 1)]
    assert "executions_2023_05" in {p["name"] for p in shown["partitions"]}
    second = subprocess.run(command, env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "created" not in second.stdout, second.stderr
    assert "executions_2023_05" in second.stdout and "default" in second.stdout
    bad = subprocess.run([*command, "--ahead", "-1"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "ahead" in bad.stderr and "Traceback" not in bad.stderr


async def test_the_command_on_one_table_says_so_then_converts_it(
    server_url: str, template_url: str
) -> None:
    """The default shape: nothing to list, a hint; --convert partitions it (as JSON too)."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    async with fresh_database(server_url) as url:  # one table, as migrated
        command = [sys.executable, "-m", "orb_learning.cli", "--dsn", url, "db", "partitions"]

        def cli(*extra: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([*command, *extra], env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            return done

        assert "executions is one table" in cli().stdout
        assert "now partitioned by month" in cli("--convert").stdout
        listed = json.loads(cli("--convert", "--json").stdout)["partitions"]
        assert f"executions_{NOW:%Y_%m}" in {p["name"] for p in listed}


async def test_an_import_of_history_gives_its_months_partitions_of_their_own(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: object
) -> None:
    """The DuckDB import (rows from late 2025, older than every partition) moves each
    batch's strays out of the default partition as bulk loads do."""
    from pathlib import Path

    from orb_learning.importer import import_duckdb
    from tests.test_import_duckdb import source_rows, write_duckdb

    assert isinstance(tmp_path, Path)
    rows = source_rows()
    summary = await import_duckdb(db, write_duckdb(tmp_path / "learning.db", rows), batch_size=4)
    assert summary.imported == 6 and summary.moved_rows > 0
    assert await connection.fetchval("SELECT count(*) FROM executions_default") == 0
    months = {f"executions_{r['timestamp']:%Y_%m}" for r in rows[: summary.imported]}
    assert months <= {p.name for p in await list_partitions(connection)}
