"""TelemetryCapture against the real server: orphans, bad events, a batch the database
rejects, feedback, the message bus, and the real model on a small stream."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orb_learning import (
    InProcessMessageBus,
    LearningDatabase,
    SentenceTransformerEmbedder,
    TelemetryCapture,
)
from orb_learning.telemetry import EVENT_TYPES, FEEDBACK, ROUTING_DECISION
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, produce, sender, wait_until


@pytest.fixture
async def hash_db(database_url: str) -> AsyncIterator[LearningDatabase]:
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        yield db


async def started(db: LearningDatabase, tmp_path: Path, **options: Any) -> TelemetryCapture:
    options.setdefault("batch_timeout", 0.05)
    capture = TelemetryCapture(
        options.pop("bus", None), db, spool_path=tmp_path / "s.jsonl", **options
    )
    await capture.initialize()
    return capture


async def test_orphans_become_dead_letters_while_capture_runs(
    hash_db: LearningDatabase, tmp_path: Path
) -> None:
    capture = await started(hash_db, tmp_path, orphan_ttl=0.5)
    send = sender(capture)
    t0, t1, t2, t3, t4 = make_stream(5, seed=7)  # t0, t3: pool results without duration
    await send(*t0.events[0])  # routing + completion, but no pool start for the duration
    await send(*t0.events[2])
    await send(*t1.events[0])  # routing only
    await send(*t2.events[2])  # outcome and start, no routing
    await send(*t2.events[1])
    await send(*t4.events[1])  # start only
    for event in t3.events:  # a complete task, stored as usual
        await send(*event)
    await wait_until(lambda: capture.dead_letters == 4, 10, "four dead letters")
    assert await capture.flush(timeout=10)
    assert capture.routing_decisions_waiting == capture.outcomes_waiting == 0
    async with hash_db.connection() as connection:
        letters = {
            row["task_id"]: row
            for row in await connection.fetch("SELECT * FROM telemetry_dead_letters")
        }
        rows = await connection.fetch("SELECT * FROM executions")
    await capture.shutdown()

    check_rows(rows, [t3])
    expected = {
        t0.task_id: "outcome without duration and no pool start after 0.5 s",
        t1.task_id: "routing decision without outcome after 0.5 s",
        t2.task_id: "outcome without routing decision after 0.5 s",
        t4.task_id: "pool start without routing decision or outcome after 0.5 s",
    }
    assert {k: v["reason"] for k, v in letters.items()} == expected
    t1_events = letters[t1.task_id]["events"]
    assert [e["event_type"] for e in t1_events] == [ROUTING_DECISION]
    assert t1_events[0]["data"]["routing"]["tier"] == t1.expected["model_tier"]  # an Enum
    assert t1_events[0]["data"]["task_data"]["description"] == t1.expected["task_description"]
    assert len(letters[t2.task_id]["events"]) == 2
    assert all(v["first_seen_at"] <= datetime.now(UTC) for v in letters.values())


BAD_EVENTS: list[tuple[str, Any]] = [
    ("routing_decision", {"routing": {"tier": "small", "confidence": 0.5}}),  # no task_id
    ("routing_decision", {"task_id": "T-42", "routing": {"tier": "small", "confidence": 0.5}}),
    ("routing_decision", None),
    ("routing_decision", ["not", "a", "dict"]),
    ("execution_outcome", {"task_id": 17, "success": True}),
    ("execution_outcome", {"task_id": "{id}"}),  # neither success nor status
    ("execution_outcome", {"task_id": "{id}", "success": True, "duration_seconds": -1.0}),
    ("execution_outcome", {"task_id": "{id}", "success": True, "duration": "fast"}),
    ("execution_outcome", {"task_id": "{id}", "success": True, "quality_score": 101}),
    ("execution_outcome", {"task_id": "{id}", "status": "failed", "error": "a\x00b"}),
    ("pool_execution_start", {"task_id": "{id}", "timestamp": "yesterday"}),
    ("feedback", {"task_id": "{id}", "rating": 9}),
    ("feedback", {"task_id": "{id}", "rating": True}),
]
BAD_ROUTING = [
    {"tier": "small", "confidence": 1.5},
    {"tier": "small", "confidence": True},
    {"tier": "small"},
    {"tier": 3, "confidence": 0.5},
    {"tier": "small", "confidence": 0.5, "complexity_score": "high"},
]


async def test_bad_events_are_rejected_counted_and_harmless(
    hash_db: LearningDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture = await started(hash_db, tmp_path, batch_size=20)
    bad: list[tuple[str, Any]] = []
    for event_type, data in BAD_EVENTS:
        if isinstance(data, dict) and data.get("task_id") == "{id}":
            data = {**data, "task_id": str(uuid.uuid4())}
        bad.append(("orb_learning." + event_type, data))
    task_data = {"description": "ok", "repo": "r"}
    for routing in BAD_ROUTING:
        data = {"task_id": uuid.uuid4(), "routing": routing, "task_data": task_data}
        bad.append((ROUTING_DECISION, data))
    nul = {"task_id": uuid.uuid4(), "routing": {"tier": "s", "confidence": 0.1}}
    bad.append((ROUTING_DECISION, {**nul, "task_data": {"description": "x\x00y"}}))
    tasks = make_stream(100, seed=8)
    good = [event for task in tasks for event in task.events]
    mixed = list(good)
    for n, event in enumerate(bad):  # among the good ones
        mixed.insert(n * 15, event)
    send = sender(capture)
    with caplog.at_level(logging.WARNING, logger="orb_learning.telemetry"):
        for event_type, data in mixed:
            await send(event_type, data)  # never raises
    assert capture.events_rejected == len(bad)
    assert "rejected orb_learning.routing_decision event" in caplog.text
    assert "task_id is missing" in caplog.text and "NUL" in caplog.text
    assert await capture.flush(timeout=30)
    assert capture.dead_letters == 0
    await capture.shutdown()
    async with hash_db.connection() as connection:
        check_rows(await connection.fetch("SELECT * FROM executions"), tasks)


async def test_a_record_the_database_rejects_does_not_poison_its_batch(
    hash_db: LearningDatabase, tmp_path: Path
) -> None:
    async with hash_db.connection() as connection:  # a rule pydantic does not know about
        await connection.execute(
            "ALTER TABLE executions ADD CONSTRAINT test_no_forbidden_repo "
            "CHECK (repo <> 'forbidden')"
        )
    capture = await started(hash_db, tmp_path, batch_size=50, batch_timeout=1.0)
    tasks = make_stream(50, seed=9)
    poisoned = tasks[17]
    poisoned.events[0][1]["task_data"] = {**poisoned.events[0][1]["task_data"], "repo": "forbidden"}
    await produce(tasks, sender(capture), producers=2)
    assert await capture.flush(timeout=30)
    await capture.shutdown()
    async with hash_db.connection() as connection:
        rows = await connection.fetch("SELECT * FROM executions")
        letters = await connection.fetch("SELECT * FROM telemetry_dead_letters")
    check_rows(rows, [t for t in tasks if t is not poisoned])
    assert [row["task_id"] for row in letters] == [poisoned.task_id]
    assert "test_no_forbidden_repo" in letters[0]["reason"]
    assert letters[0]["events"][0]["data"]["repo"] == "forbidden"
    assert capture.dead_letters == 1


async def test_feedback_lands_and_updates_the_execution(
    hash_db: LearningDatabase, tmp_path: Path
) -> None:
    capture = await started(hash_db, tmp_path, feedback_wait=10)
    send = sender(capture)
    rated, early, _ = make_stream(3, seed=10)
    for event in rated.events:
        await send(*event)
    await capture.capture_feedback(
        {"task_id": rated.task_id, "rating": 4, "feedback_type": "thumbs_up", "comment": "good"}
    )
    # Feedback may come before the execution is complete: it is retried until it is.
    await capture.capture_feedback({"task_id": str(early.task_id), "rating": 2})
    await wait_until(lambda: capture.stats()["feedback_waiting"] == 1, 10, "a feedback retry")
    for event in early.events:
        await send(*event)
    await wait_until(lambda: capture.stats()["feedback_written"] == 2, 10, "both feedback")
    for event in rated.events:  # the task again (a replay, a retry): the rating stays
        await send(*event)
    assert await capture.flush(timeout=10)
    await capture.shutdown()
    async with hash_db.connection() as connection:
        feedback = await connection.fetch("SELECT * FROM feedback ORDER BY rating")
        rows = await connection.fetch("SELECT task_id, user_rating FROM executions")
    ratings = {row["task_id"]: row["user_rating"] for row in rows}
    assert [(f["task_id"], f["rating"]) for f in feedback] == [
        (early.task_id, 2),
        (rated.task_id, 4),
    ]
    assert feedback[1]["feedback_type"] == "thumbs_up" and feedback[1]["comment"] == "good"
    assert ratings == {rated.task_id: 4, early.task_id: 2}


async def test_feedback_for_an_unknown_task_ends_in_dead_letters(
    hash_db: LearningDatabase, tmp_path: Path
) -> None:
    capture = await started(hash_db, tmp_path, feedback_wait=0.5)
    unknown = uuid.uuid4()
    await capture.capture_feedback({"task_id": unknown, "rating": 5, "comment": "lost"})
    await wait_until(lambda: capture.stats()["dead_letters_written"] == 1, 10, "a dead letter")
    await capture.shutdown()
    async with hash_db.connection() as connection:
        letter = await connection.fetchrow("SELECT * FROM telemetry_dead_letters")
        assert await connection.fetchval("SELECT count(*) FROM feedback") == 0
    assert letter is not None and letter["task_id"] == unknown
    assert letter["reason"] == "feedback for a task that is not stored (waited 0.5 s)"
    assert letter["events"][0]["event_type"] == FEEDBACK
    assert letter["events"][0]["data"]["comment"] == "lost"


async def test_the_bus_feeds_every_event_type_and_logs_failing_handlers(
    hash_db: LearningDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = InProcessMessageBus()
    capture = await started(hash_db, tmp_path, bus=bus)

    async def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(ROUTING_DECISION, broken)
    tasks = make_stream(30, seed=11)
    with caplog.at_level(logging.ERROR, logger="orb_learning.telemetry"):
        await produce(tasks, bus.publish)
        await bus.publish(FEEDBACK, {"task_id": tasks[0].task_id, "rating": 3})
        await bus.drain()
    failures = [r for r in caplog.records if r.exc_info and "subscriber bug" in str(r.exc_info[1])]
    assert bus.handler_errors == len(failures) == 30
    assert await capture.flush(timeout=10)
    await wait_until(lambda: capture.stats()["feedback_written"] == 1, 10, "the feedback")
    await capture.shutdown()
    assert set(EVENT_TYPES) == {event for task in tasks for event, _ in task.events} | {FEEDBACK}
    async with hash_db.connection() as connection:
        rows = await connection.fetch("SELECT * FROM executions")
    tasks[0].expected.update(user_rating=3, user_accepted=True)
    check_rows(rows, tasks)


async def test_the_real_model_embeds_captured_tasks(
    database_url: str, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    tasks = make_stream(200, seed=12)
    async with LearningDatabase(database_url, embedder=embedder) as db:
        capture = await started(db, tmp_path, batch_size=64)
        await produce(tasks, sender(capture))
        assert await capture.flush(timeout=120)
        await capture.shutdown()
        async with db.connection() as connection:
            check_rows(await connection.fetch("SELECT * FROM executions"), tasks)
        probe = tasks[5].expected["task_description"]
        similar = await db.find_similar_executions(probe, days_back=None, threshold=0.9)
    assert similar[0]["task_id"] == tasks[5].task_id and similar[0]["similarity"] > 0.99


async def test_without_a_database_the_capture_opens_one_from_the_environment(
    database_url: str, connection: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture's own database: server and embedding settings from ORB_LEARNING_*, as
    LearningDatabase() reads them, and records stored through it end to end."""
    monkeypatch.setenv("ORB_LEARNING_DATABASE_URL", database_url)
    monkeypatch.setenv("ORB_LEARNING_EMBEDDING_BACKEND", "onnx")
    capture = TelemetryCapture(batch_timeout=0.05, spool_path=tmp_path / "s.jsonl")
    assert capture.database.settings.embedding_backend == "onnx"
    await capture.initialize()
    try:
        send = sender(capture)
        [task] = make_stream(1, seed=3)
        for event in task.events:
            await send(*event)
        await capture.flush()
    finally:
        await capture.shutdown()
    rows = await connection.fetch("SELECT * FROM executions")
    check_rows(rows, [task])
