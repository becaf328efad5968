"""A stream of tasks, events out of order from concurrent producers: one row per task."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from orb_learning import InProcessMessageBus, LearningDatabase, TelemetryCapture
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, produce, sender


async def test_5000_tasks_out_of_order_become_exactly_5000_rows(
    database_url: str, tmp_path: Path
) -> None:
    tasks = make_stream(5000)
    bus = InProcessMessageBus()
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        capture = TelemetryCapture(
            bus, db, batch_size=200, batch_timeout=0.2, spool_path=tmp_path / "spool.jsonl"
        )
        await capture.initialize()
        direct = sender(capture)

        async def send(event_type: str, payload: dict[str, Any]) -> None:
            """Half the events through the bus, half by direct calls."""
            if zlib.crc32(f"{event_type}{payload['task_id']}".encode()) % 2:
                await bus.publish(event_type, payload)
            else:
                await direct(event_type, payload)

        await produce(tasks, send, producers=6)
        await bus.drain()
        assert await capture.flush(timeout=60)
        stats = capture.stats()
        assert stats["routing_decisions_waiting"] == stats["outcomes_waiting"] == 0, stats
        assert stats["events_rejected"] == stats["dead_letters"] == 0, stats
        assert stats["records_written"] == 5000, stats
        await capture.shutdown()
        async with db.connection() as connection:
            rows = await connection.fetch("SELECT * FROM executions")
    check_rows(rows, tasks)
    assert bus.handler_errors == 0
