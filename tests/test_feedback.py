"""Feedback on executions, and dead letters: real tables, real constraints."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from orb_learning import (
    DeadLetter,
    FeedbackRecord,
    LearningDatabase,
    OrbLearningError,
    UnknownExecutionError,
)
from tests.test_store import make_record, unit_vectors


async def stored(db: LearningDatabase) -> uuid.UUID:
    record = make_record()
    await db.store_executions([record], embeddings=unit_vectors(1))
    return record.task_id


async def user_fields(connection: asyncpg.Connection, task_id: uuid.UUID) -> tuple[object, object]:
    row = await connection.fetchrow(
        "SELECT user_rating, user_accepted FROM executions WHERE task_id = $1", task_id
    )
    return row["user_rating"], row["user_accepted"]


async def test_feedback_is_stored_and_sets_the_execution(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    task_id = await stored(db)
    assert await user_fields(connection, task_id) == (None, None)
    feedback = FeedbackRecord(task_id=task_id, feedback_type="rating", rating=4, comment="good")
    await db.store_feedback(feedback)
    row = await connection.fetchrow(
        "SELECT * FROM feedback WHERE feedback_id = $1", feedback.feedback_id
    )
    assert row["task_id"] == task_id and row["rating"] == 4 and row["comment"] == "good"
    assert row["user_id"] is None  # anonymous by default
    assert await user_fields(connection, task_id) == (4, True)


@pytest.mark.parametrize(
    ("feedback_type", "rating", "accepted"),
    [("thumbs_up", 2, True), ("THUMBS_DOWN", 5, False), ("rejected", 4, False),
     ("rating", 3, True), ("rating", 2, False), ("comment", 1, False)],
)  # fmt: skip
async def test_user_accepted_follows_the_type_then_the_rating(
    db: LearningDatabase,
    connection: asyncpg.Connection,
    feedback_type: str,
    rating: int,
    accepted: bool,
) -> None:
    task_id = await stored(db)
    await db.store_feedback(
        FeedbackRecord(task_id=task_id, feedback_type=feedback_type, rating=rating)
    )
    assert await user_fields(connection, task_id) == (rating, accepted)


async def test_several_feedbacks_the_latest_wins_whatever_the_arrival_order(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    task_id = await stored(db)
    now = datetime.now(UTC)
    newer = FeedbackRecord(task_id=task_id, feedback_type="thumbs_down", rating=1, timestamp=now)
    older = FeedbackRecord(
        task_id=task_id, feedback_type="thumbs_up", rating=5, timestamp=now - timedelta(hours=1)
    )
    await db.store_feedback(newer)
    await db.store_feedback(older)  # arrives late: kept, but does not override
    await db.store_feedback(older)  # again: idempotent by feedback_id
    assert (
        await connection.fetchval("SELECT count(*) FROM feedback WHERE task_id = $1", task_id) == 2
    )
    assert await user_fields(connection, task_id) == (1, False)


async def test_feedback_for_an_unknown_task_is_a_clear_error(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    missing = uuid.uuid4()
    with pytest.raises(UnknownExecutionError, match=str(missing)) as caught:
        await db.store_feedback(FeedbackRecord(task_id=missing, feedback_type="rating", rating=3))
    assert isinstance(caught.value, OrbLearningError) and isinstance(caught.value, LookupError)
    assert await connection.fetchval("SELECT count(*) FROM feedback") == 0


async def test_re_storing_the_execution_keeps_the_feedback(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    record = make_record()
    await db.store_executions([record], embeddings=unit_vectors(1))
    await db.store_feedback(
        FeedbackRecord(task_id=record.task_id, feedback_type="thumbs_up", rating=5)
    )
    retried = record.model_copy(update={"actual_cost": 9.0})  # user_rating None: telemetry
    await db.store_executions([retried], embeddings=unit_vectors(1))
    assert await user_fields(connection, record.task_id) == (5, True)
    rated = record.model_copy(update={"user_rating": 2, "user_accepted": False})
    await db.store_executions([rated], embeddings=unit_vectors(1))
    assert await user_fields(connection, record.task_id) == (2, False)  # later data wins


async def test_feedback_goes_with_its_execution(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    task_id = await stored(db)
    await db.store_feedback(FeedbackRecord(task_id=task_id, feedback_type="rating", rating=3))
    await connection.execute("DELETE FROM executions WHERE task_id = $1", task_id)
    assert await connection.fetchval("SELECT count(*) FROM feedback") == 0


async def test_dead_letters_are_kept_once(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    seen = datetime.now(UTC)
    letters = [
        DeadLetter(
            uuid.uuid4(), "routing decision without outcome", [{"task_id": "x", "n": 1}], seen
        ),
        DeadLetter(None, "event without task_id", [{"bad": True}], seen),
    ]
    assert await db.store_dead_letters(letters) == 2
    await db.store_dead_letters(letters)  # a replay writes nothing twice
    rows = await connection.fetch("SELECT * FROM telemetry_dead_letters ORDER BY reason")
    assert len(rows) == 2
    assert rows[1]["events"] == [{"task_id": "x", "n": 1}]
    assert rows[0]["task_id"] is None and rows[0]["first_seen_at"] == seen
