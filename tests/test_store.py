"""Writes: single upsert, the batch path (COPY + upsert), atomicity and bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import numpy as np
import pytest
from pgvector import HalfVector

from orb_learning import (
    ErrorType,
    ExecutionRecord,
    IntegrityError,
    InvalidRecordError,
    LearningDatabase,
)
from orb_learning._store import RECORD_COLUMNS
from tests.factories import as_stored


def make_record(**overrides: Any) -> ExecutionRecord:
    values: dict[str, Any] = {
        "task_type": "refactor",
        "task_description": "Optimize database queries",
        "repo": "mahavishnu",
        "file_count": 3,
        "estimated_tokens": 2500,
        "model_tier": "medium",
        "pool_type": "mahavishnu",
        "routing_confidence": 0.85,
        "complexity_score": 65,
        "success": True,
        "duration_seconds": 45.2,
        "quality_score": 92,
        "cost_estimate": 0.003,
        "actual_cost": 0.0032,
    }
    values.update(overrides)
    return ExecutionRecord(**values)


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, 384)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def stored_row(connection: asyncpg.Connection, task_id: uuid.UUID) -> asyncpg.Record:
    row = await connection.fetchrow("SELECT * FROM executions WHERE task_id = $1", task_id)
    assert row is not None, f"task {task_id} was not stored"
    return row


def as_record(row: asyncpg.Record) -> ExecutionRecord:
    return ExecutionRecord.from_dict({c: row[c] for c in RECORD_COLUMNS})


async def test_store_execution_writes_every_field_and_the_embedding(
    db: LearningDatabase, connection: asyncpg.Connection, embedder: Any
) -> None:
    record = make_record(
        timestamp=datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        swarm_topology="mesh",
        error_type=ErrorType.TIMEOUT,
        error_message="timed out after 30s",
        success=False,
        user_accepted=True,
        user_rating=4,
        peak_memory_mb=512.5,
        cpu_time_seconds=12.0,
        solution_summary="Add a composite index",
        metadata={"worker": "w-1", "nested": {"list": [1, 2.5, None, "ü"]}},
    )
    await db.store_execution(record)

    row = await stored_row(connection, record.task_id)
    assert as_record(row) == record
    assert row["error_type"] == "timeout"
    assert row["uploaded_at"] is not None
    # pgvector 0.5 decodes `halfvec` to pgvector.HalfVector; the embedding is the
    # description's, in half precision (revision 0008).
    assert isinstance(row["embedding"], HalfVector)
    stored = row["embedding"].to_numpy()
    expected = embedder.encode([record.task_description])[0]
    assert stored.shape == (384,)
    assert np.array_equal(stored, as_stored(expected))


async def test_storing_the_same_task_id_again_updates_the_row(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    record = make_record()
    await db.store_execution(record)
    first_upload = (await stored_row(connection, record.task_id))["uploaded_at"]

    retried = record.model_copy(
        update={"success": False, "actual_cost": 0.01, "quality_score": None}
    )
    await db.store_execution(retried)

    assert await connection.fetchval("SELECT count(*) FROM executions") == 1
    row = await stored_row(connection, record.task_id)
    assert as_record(row) == retried
    assert row["uploaded_at"] >= first_upload


async def test_store_executions_batch_round_trips_and_counts(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    records = [
        make_record(task_description=f"Task number {i}", repo=f"repo-{i % 3}", quality_score=None)
        for i in range(250)
    ]
    assert await db.store_executions(records) == 250
    assert await connection.fetchval("SELECT count(*) FROM executions") == 250
    for record in records[::50]:
        assert as_record(await stored_row(connection, record.task_id)) == record
    assert await connection.fetchval("SELECT count(*) FROM executions WHERE embedding IS NULL") == 0


async def test_batch_embeddings_are_those_of_each_description(
    db: LearningDatabase, connection: asyncpg.Connection, embedder: Any
) -> None:
    texts = ["Fix the login redirect", "Write unit tests for the parser", "Refactor the CSS grid"]
    records = [make_record(task_description=t) for t in texts]
    await db.store_executions(records)
    expected = embedder.encode(texts)
    for record, vector in zip(records, expected, strict=True):
        row = await stored_row(connection, record.task_id)
        assert np.array_equal(row["embedding"].to_numpy(), as_stored(vector))


async def test_embed_gives_what_the_batch_path_stores(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    """``db.embed`` (the telemetry writer embeds ahead of its writes with it) returns the
    vectors store_executions would have computed and stored itself."""
    records = [make_record(task_description=f"Migrate service {i} to asyncio") for i in range(3)]
    vectors = await db.embed([r.embedding_text() for r in records])
    assert vectors.shape == (3, 384)
    await db.store_executions(records)
    for record, vector in zip(records, vectors, strict=True):
        row = await stored_row(connection, record.task_id)
        assert np.array_equal(row["embedding"].to_numpy(), as_stored(vector))


async def test_batch_with_precomputed_embeddings(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    records = [make_record(task_description=f"t{i}") for i in range(20)]
    vectors = unit_vectors(20)
    assert await db.store_executions(records, embeddings=vectors) == 20
    row = await stored_row(connection, records[7].task_id)
    assert np.array_equal(row["embedding"].to_numpy(), as_stored(vectors[7]))

    with pytest.raises(ValueError, match="3 embeddings given for 20 records"):
        await db.store_executions(records, embeddings=vectors[:3])
    bad = vectors.copy()
    bad[4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        await db.store_executions(records, embeddings=bad)
    with pytest.raises(ValueError, match="shape"):
        await db.store_executions(records[:1], embeddings=np.ones((1, 10), dtype=np.float32))


async def test_later_record_wins_within_a_batch(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    first = make_record(actual_cost=1.0)
    second = first.model_copy(update={"actual_cost": 2.0, "task_description": "changed"})
    other = make_record()
    assert await db.store_executions([first, other, second]) == 2
    row = await stored_row(connection, first.task_id)
    assert row["actual_cost"] == 2.0 and row["task_description"] == "changed"


async def test_empty_batch_returns_zero(db: LearningDatabase) -> None:
    assert await db.store_executions([]) == 0


async def test_one_invalid_record_fails_the_whole_batch_naming_it(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    good = make_record().to_dict()
    bad_id = uuid.uuid4()
    bad = {**make_record().to_dict(), "task_id": bad_id, "routing_confidence": 1.7}
    with pytest.raises(InvalidRecordError, match=str(bad_id)) as caught:
        await db.store_executions([good, bad])
    assert "routing_confidence" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert await connection.fetchval("SELECT count(*) FROM executions") == 0


async def test_invalid_records_are_skipped_when_asked(
    db: LearningDatabase, connection: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_record()
    bad = {**make_record().to_dict(), "task_description": "nul \x00 inside"}
    assert await db.store_executions([good, bad], skip_invalid=True) == 1
    assert await connection.fetchval("SELECT count(*) FROM executions") == 1
    assert "NUL" in caplog.text


async def test_a_record_that_bypassed_validation_is_stopped_by_the_schema(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    good = make_record()
    # model_construct skips pydantic: the CHECK constraints are the last line of defence,
    # and the batch is one transaction, so the good record is not written either.
    forged = ExecutionRecord.model_construct(**{**make_record().to_dict(), "complexity_score": 500})
    with pytest.raises(IntegrityError) as caught:
        await db.store_executions([good, forged])
    assert caught.value.sqlstate == "23514"
    assert await connection.fetchval("SELECT count(*) FROM executions") == 0


def test_invalid_record_raises_validation_error_naming_the_field() -> None:
    from pydantic import ValidationError

    for field, value in [
        ("routing_confidence", float("nan")),
        ("duration_seconds", float("inf")),
        ("quality_score", 101),
        ("task_description", "a\x00b"),
    ]:
        with pytest.raises(ValidationError) as caught:
            make_record(**{field: value})
        assert caught.value.errors()[0]["loc"] == (field,)


async def test_store_execution_refuses_other_types(db: LearningDatabase) -> None:
    with pytest.raises(TypeError):
        await db.store_execution(make_record().to_dict())  # type: ignore[arg-type]


async def test_concurrent_single_stores_all_land(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    import asyncio

    records = [make_record(task_description=f"concurrent task {i}") for i in range(40)]
    await asyncio.gather(*(db.store_execution(r) for r in records))
    assert await connection.fetchval("SELECT count(*) FROM executions") == 40


async def test_timestamps_are_stored_as_instants(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    naive = make_record(timestamp=datetime(2026, 1, 2, 3, 4, 5))
    await db.store_execution(naive)
    row = await stored_row(connection, naive.task_id)
    assert row["timestamp"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
