"""Retention: Parquet archives equal to the deleted rows, batched deletes, feedback going with
its executions, interrupted and killed runs finished by a re-run without a duplicate, the
dry run and the command. Real server, real Parquet files read back by DuckDB and pyarrow."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orb_learning import FeedbackRecord, LearningDatabase
from orb_learning.retention import ARCHIVE_COLUMNS, Retention, cleanup_old_executions
from tests.factories import execution

AGES = [1, 5, 20, 35, 50, 80, 95, 100, 130, 160, 200, 250, 300, 370, 400, 500]  # days


async def populate(db: LearningDatabase, per_age: int = 4) -> datetime:
    """``per_age`` executions at each of AGES days ago (several months), random unit
    embeddings, and feedback on every other one; returns the reference 'now'."""
    now = datetime.now(UTC)
    rng = random.Random(3)
    records = [
        execution(rng, now - timedelta(days=age, minutes=rng.randrange(600)))
        for age in AGES
        for _ in range(per_age)
    ]
    vectors = np.random.default_rng(3).normal(size=(len(records), 384)).astype(np.float32)
    await db.store_executions(records, embeddings=vectors)
    for record in records[::2]:
        await db.store_feedback(FeedbackRecord(task_id=record.task_id, feedback_type="rating",
                                               rating=rng.randint(1, 5)))  # fmt: skip
    return now


async def snapshot(connection: asyncpg.Connection, where: str = "true") -> dict[str, dict]:
    rows = await connection.fetch(f"SELECT * FROM executions WHERE {where}")
    return {str(r["task_id"]): dict(r) for r in rows}


def assert_same_row(archived: dict[str, Any], stored: dict[str, Any]) -> None:
    """An archived row (DuckDB or pyarrow) equals the row that was stored, field by field."""
    assert set(ARCHIVE_COLUMNS) <= set(archived)
    for name in ARCHIVE_COLUMNS:
        got, want = archived[name], stored[name]
        if name == "task_id":
            assert got == str(want)
        elif name == "metadata":
            assert json.loads(got) == want
        elif name == "embedding":
            assert len(got) == 384
            assert np.array_equal(np.asarray(got, dtype=np.float32), want.to_numpy())  # exact
        elif isinstance(want, datetime):
            assert got.utcoffset() is not None and got == want, name
        else:
            assert got == want and type(got) is type(want), (name, got, want)


def read_archive(archive: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every archived row, read by DuckDB and by pyarrow (hive partitions included)."""
    pattern = str(archive / "**" / "*.parquet")
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    cursor = duck.execute(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)")
    names = [d[0] for d in cursor.description]
    by_duckdb = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    by_arrow = pq.read_table(archive).to_pylist() if by_duckdb else []
    return by_duckdb, by_arrow


def check_archive(archive: Path, deleted: dict[str, dict]) -> None:
    """The archive holds exactly the deleted rows, each once, in its UTC month's partition."""
    assert not list(archive.rglob("*.pending")), "a pending file was left behind"
    by_duckdb, by_arrow = read_archive(archive)
    for rows in (by_duckdb, by_arrow):
        ids = [row["task_id"] for row in rows]
        assert len(ids) == len(set(ids)) == len(deleted)
        assert set(ids) == set(deleted)
        for row in rows:
            stored = deleted[row["task_id"]]
            assert_same_row(row, stored)
            moment = stored["timestamp"].astimezone(UTC)
            assert (int(row["year"]), int(row["month"])) == (moment.year, moment.month)
    schema = pq.read_schema(next(archive.rglob("*.parquet")))
    assert schema.field("embedding").type == pa.list_(pa.float32())
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")


async def test_archive_then_delete(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    now = await populate(db)
    cutoff = now - timedelta(days=90)
    old = await snapshot(connection, f"timestamp < '{cutoff.isoformat()}'")
    fresh = await snapshot(connection, f"timestamp >= '{cutoff.isoformat()}'")
    feedback_before = await connection.fetchval("SELECT count(*) FROM feedback")

    result = await cleanup_old_executions(db, 90, tmp_path / "archive", batch_size=7)

    assert result["days_cleaned"] == 90
    assert result["deleted_count"] == result["archived_count"] == len(old) == 40
    assert result["batches"] == 6 and sum(result["months"].values()) == 40
    assert await snapshot(connection) == fresh
    check_archive(tmp_path / "archive", old)
    # Feedback of the deleted executions went with them (ON DELETE CASCADE), none other.
    assert await connection.fetchval(
        "SELECT count(*) FROM feedback f LEFT JOIN executions e USING (task_id) "
        "WHERE e.task_id IS NULL"
    ) == 0  # fmt: skip
    assert await connection.fetchval("SELECT count(*) FROM feedback") == (
        feedback_before - result["feedback_deleted"]
    ) == len(fresh) // 2  # fmt: skip
    months = {p.parent.name for p in (tmp_path / "archive").rglob("*.parquet")}
    assert len(months) >= 8

    again = await db.cleanup_old_executions(90, tmp_path / "archive")  # nothing left to do
    assert (again["deleted_count"], again["archived_count"], again["batches"]) == (0, 0, 0)
    check_archive(tmp_path / "archive", old)


async def test_cleanup_365_keeps_fresh_rows_and_0_deletes_everything(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    await populate(db, per_age=2)
    kept = await db.cleanup_old_executions(days_to_keep=365)
    assert kept == {**kept, "days_cleaned": 365, "archived_count": 0, "deleted_count": 6}
    assert await connection.fetchval(
        "SELECT count(*) FROM executions WHERE timestamp < now() - interval '365 days'"
    ) == 0  # fmt: skip
    assert await connection.fetchval("SELECT count(*) FROM executions") == 26

    everything = await db.cleanup_old_executions(0)
    assert (everything["days_cleaned"], everything["deleted_count"]) == (0, 26)
    assert await connection.fetchval("SELECT count(*) FROM executions") == 0
    assert await connection.fetchval("SELECT count(*) FROM feedback") == 0


class Interrupted(Retention):
    """Fails batch ``at`` in a hook: before its commit, or after it (before the rename)."""

    def __init__(self, *args: Any, at: int, stage: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at, self.stage = at, stage
        self.others_could_write = False

    async def before_commit(self, batch: int) -> None:
        if batch == 1:  # a batch in flight does not block writes to other rows
            fresh = execution(random.Random(9), datetime.now(UTC))
            vector = np.ones(384, dtype=np.float32)
            await asyncio.wait_for(self.db.store_executions([fresh], embeddings=[vector]), 10)
            self.others_could_write = True
        if self.stage == "before_commit" and batch == self.at:
            raise RuntimeError("simulated failure before the commit")

    async def before_publish(self, batch: int) -> None:
        if self.stage == "before_publish" and batch == self.at:
            raise RuntimeError("simulated crash between the commit and the rename")


@pytest.mark.parametrize("stage", ["before_commit", "before_publish"])
async def test_interrupted_run_is_finished_by_a_rerun(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: Path, stage: str
) -> None:
    now = await populate(db)
    old = await snapshot(connection, f"timestamp < '{(now - timedelta(days=90)).isoformat()}'")
    archive = tmp_path / "archive"

    interrupted = Interrupted(db, days_to_keep=90, archive_path=archive, batch_size=9,
                              at=2, stage=stage, now=now)  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated"):
        await interrupted.run()
    assert interrupted.others_could_write
    remaining = await connection.fetchval(
        "SELECT count(*) FROM executions WHERE timestamp < $1", now - timedelta(days=90)
    )
    assert remaining == len(old) - (9 if stage == "before_commit" else 18)
    pending = list(archive.rglob(".*.pending"))  # one per month of the batch
    assert (len(pending) == 0) == (stage == "before_commit")

    rerun = await Retention(db, days_to_keep=90, archive_path=archive, now=now).run()
    assert len(rerun.recovered_files) == len(pending)
    assert rerun.deleted_count == remaining
    check_archive(archive, old)


async def test_killed_run_is_settled_by_the_next_run(
    db: LearningDatabase, database_url: str, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    """A process killed inside a batch (after writing its archive and deleting, before the
    commit) leaves a pending file; the server aborts its transaction; the next run discards
    the file and archives those rows itself. A pending file whose transaction status is
    unknown is kept for the rows no longer in the table."""
    now = await populate(db)
    old = await snapshot(connection, f"timestamp < '{(now - timedelta(days=90)).isoformat()}'")
    archive = tmp_path / "archive"
    script = tmp_path / "killed.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from orb_learning import LearningDatabase\n"
        "from orb_learning.retention import Retention\n"
        "class Killed(Retention):\n"
        "    async def before_commit(self, batch):\n"
        "        if batch == 2:\n"
        "            os._exit(9)\n"
        "async def main():\n"
        "    async with LearningDatabase(sys.argv[1], preload_model=False) as db:\n"
        "        await Killed(db, days_to_keep=90, archive_path=sys.argv[2], batch_size=8).run()\n"
        "asyncio.run(main())\n"
    )
    killed = subprocess.run(
        [sys.executable, str(script), database_url, str(archive)], capture_output=True, timeout=120
    )
    assert killed.returncode == 9, killed.stderr
    pending = list(archive.rglob(".*.pending"))  # batch 2: written, never committed
    assert pending
    xid = pending[0].name.split(".")[-2]
    for _ in range(100):  # the server notices the dropped connection
        if await connection.fetchval("SELECT pg_xact_status($1::text::xid8)", xid) == "aborted":
            break
        await asyncio.sleep(0.1)

    rerun = await Retention(db, days_to_keep=90, archive_path=archive, now=now).run()
    assert (rerun.discarded_pending, rerun.recovered_files) == (len(pending), [])
    assert rerun.deleted_count == len(old) - 8
    check_archive(archive, old)

    # Unknown status (an xid the commit log no longer knows): rows gone -> kept in the file.
    final = next(archive.rglob("*.parquet"))
    future = final.with_name(f".{final.name}.99999999999.pending")
    final.rename(future)
    settled = await Retention(db, days_to_keep=90, archive_path=archive, now=now).run()
    assert settled.recovered_files == [str(final)]
    check_archive(archive, old)


async def test_dry_run_changes_nothing(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    now = await populate(db, per_age=3)
    before = await snapshot(connection)
    feedback = await connection.fetchval("SELECT count(*) FROM feedback")
    plan = await Retention(db, days_to_keep=90, archive_path=tmp_path / "a", now=now).plan()

    assert plan.dry_run and plan.deleted_count == plan.archived_count == 30
    expected: dict[str, int] = {}
    for row in before.values():
        if row["timestamp"] < now - timedelta(days=90):
            month = row["timestamp"].astimezone(UTC).strftime("%Y-%m")
            expected[month] = expected.get(month, 0) + 1
    assert plan.months == dict(sorted(expected.items()))
    assert plan.feedback_deleted == await connection.fetchval(
        "SELECT count(*) FROM feedback JOIN executions e USING (task_id) WHERE e.timestamp < $1",
        now - timedelta(days=90),
    )  # fmt: skip
    assert await snapshot(connection) == before
    assert await connection.fetchval("SELECT count(*) FROM feedback") == feedback
    assert not (tmp_path / "a").exists()


async def test_arguments_are_checked(db: LearningDatabase, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days_to_keep"):
        await db.cleanup_old_executions(-1)
    with pytest.raises(ValueError, match="days_to_keep"):
        await db.cleanup_old_executions(True)  # type: ignore[arg-type]
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        await db.cleanup_old_executions(30, tmp_path / "file")


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    command = [sys.executable, "-m", "orb_learning.cli", "--dsn", url, "retention", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


async def test_cli_end_to_end(
    db: LearningDatabase, database_url: str, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    now = await populate(db, per_age=2)
    old = await snapshot(connection, f"timestamp < '{(now - timedelta(days=30)).isoformat()}'")
    archive = tmp_path / "archive"

    dry = run_cli(database_url, "--keep-days", "30", "--archive", str(archive), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"Would delete {len(old)} executions" in dry.stdout and "month" in dry.stdout
    assert await connection.fetchval("SELECT count(*) FROM executions") == 2 * len(AGES)
    assert not archive.exists()

    done = run_cli(database_url, "--keep-days", "30", "--archive", str(archive), "--json",
                   "--batch-size", "5")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["deleted_count"] == result["archived_count"] == len(old)
    assert result["days_cleaned"] == 30 and result["batches"] == -(-len(old) // 5)
    assert len(result["archive_files"]) >= len(result["months"])
    check_archive(archive, old)

    plain = run_cli(database_url, "--keep-days", "0")
    assert plain.returncode == 0, plain.stderr
    assert "Deleted 6 executions" in plain.stdout
    assert await connection.fetchval("SELECT count(*) FROM executions") == 0
    assert run_cli(database_url, "--keep-days", "-1").returncode == 2


async def test_route_recommendations_made_before_the_cutoff_go_too(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    await populate(db)
    kept = await db.recommend_route("Fix the flaky parser test", candidates=[("a", "p")])
    old = await db.recommend_route("Fix the flaky parser test", candidates=[("a", "p")])
    await connection.execute(
        "UPDATE route_recommendations SET created_at = now() - interval '91 days' "
        "WHERE recommendation_id = $1",
        old.recommendation_id,
    )
    plan = await Retention(db, days_to_keep=90).plan()
    assert plan.recommendations_deleted == 1
    result = await db.cleanup_old_executions(90, reclaim=False)
    assert result["recommendations_deleted"] == 1
    assert await connection.fetchval(
        "SELECT array_agg(recommendation_id) FROM route_recommendations"
    ) == [kept.recommendation_id]
