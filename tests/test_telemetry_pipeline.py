"""The capture's two splits, against the real server: the caller's snapshot versus the
validation behind it, and the writer's embedding of a batch versus the write of the
previous one."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orb_learning import LearningDatabase, TelemetryCapture
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, sender, wait_until


async def test_what_is_stored_is_what_was_sent_whatever_the_caller_does_after(
    database_url: str, tmp_path: Path
) -> None:
    """A caller may reuse or change its dicts once the call returned: the record and the
    dead letter keep the event as it was at the call."""
    tasks = make_stream(6, seed=21)
    complete, orphan = tasks[:5], tasks[5]
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        capture = TelemetryCapture(
            None, db, batch_timeout=0.05, orphan_ttl=0.5, spool_path=tmp_path / "s.jsonl"
        )
        await capture.initialize()
        send = sender(capture)
        sent: list[dict[str, Any]] = []
        for task in [*complete, orphan]:
            for event_type, data in task.events if task is not orphan else task.events[:1]:
                await send(event_type, data)
                sent.append(data)
        for data in sent:  # all of it changed in place, right after the calls
            task_data = data.get("task_data")
            if task_data is not None:
                task_data["description"] = "changed afterwards"
                task_data["files"].append("src/later.py")
                task_data["metadata"]["ticket"] = "changed"
            if isinstance(data.get("routing"), dict):
                data["routing"]["confidence"] = 0.0
            for key in ("duration_seconds", "quality_score", "status"):
                if key in data:
                    data[key] = "changed"
            data["task_id"] = str(uuid.uuid4())
        await wait_until(lambda: capture.dead_letters == 1, 10, "the orphan's dead letter")
        assert await capture.flush(timeout=30)
        assert capture.events_rejected == 0
        await capture.shutdown()
        async with db.connection() as connection:
            rows = await connection.fetch("SELECT * FROM executions")
            letter = await connection.fetchrow("SELECT * FROM telemetry_dead_letters")
    check_rows(rows, complete)
    assert letter is not None and letter["task_id"] == orphan.task_id
    raw = letter["events"][0]["data"]
    assert raw["task_data"]["description"] == orphan.expected["task_description"]
    assert raw["task_data"]["metadata"] == {"ticket": "T-5"}
    assert len(raw["task_data"]["files"]) == orphan.expected["file_count"]


class SlowEmbedder(HashEmbedder):
    """The hash embedder at a model's pace, with the span of each call."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.threads: set[str] = set()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        time.sleep(0.05)
        vectors = super().encode(texts)
        self.spans.append((started, time.perf_counter()))
        self.threads.add(threading.current_thread().name)
        return vectors


class RecordingDatabase(LearningDatabase):
    """The real store; it notes each batch write's span and whether vectors came with it."""

    def __init__(self, dsn: str, embedder: SlowEmbedder) -> None:
        super().__init__(dsn, embedder=embedder)
        self.writes: list[tuple[float, float, int, bool]] = []

    async def store_executions(self, records: Any, **options: Any) -> int:
        started = time.perf_counter()
        await asyncio.sleep(0.05)  # a server slower than the test's: the overlap shows
        written = await super().store_executions(records, **options)
        given = options.get("embeddings") is not None
        self.writes.append((started, time.perf_counter(), len(records), given))
        return written


async def test_the_next_batch_is_embedded_while_the_previous_one_is_written(
    database_url: str, tmp_path: Path
) -> None:
    tasks = make_stream(200, seed=22)
    embedder = SlowEmbedder()
    async with RecordingDatabase(database_url, embedder) as db:
        capture = TelemetryCapture(
            None, db, batch_size=20, batch_timeout=0.05, spool_path=tmp_path / "s.jsonl"
        )
        await capture.initialize()
        send = sender(capture)
        for task in tasks:  # in order: every batch is full, each embedded then written
            for event in task.events:
                await send(*event)
        assert await capture.flush(timeout=60)
        await capture.shutdown()
        async with db.connection() as connection:
            rows = await connection.fetch("SELECT * FROM executions")
    check_rows(rows, tasks)
    assert sum(w[2] for w in db.writes) == 200 and all(w[3] for w in db.writes), db.writes
    starts = [w[0] for w in db.writes]
    assert starts == sorted(starts)
    # One write at a time, in order: each starts after the previous one ended.
    assert all(a[1] <= b[0] for a, b in zip(db.writes, db.writes[1:], strict=False))
    overlapping = [w for w in db.writes if any(s < w[1] and w[0] < e for s, e in embedder.spans)]
    assert len(overlapping) >= len(db.writes) // 2, (db.writes, embedder.spans)
