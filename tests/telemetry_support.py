"""What the telemetry tests share beyond :mod:`orb_learning.testing` (the embedder, the
router stand-ins and the task stream): sending events, and checking every field stored."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from orb_learning import TelemetryCapture
from orb_learning.testing import Task

Send = Callable[[str, dict[str, Any]], Awaitable[None]]


def sender(capture: TelemetryCapture) -> Send:
    """Call the capture method an event type names (``capture_<name>``)."""

    async def send(event_type: str, payload: dict[str, Any]) -> None:
        name = "capture_" + event_type.removeprefix("orb_learning.")
        await getattr(capture, name)(payload)

    return send


async def produce(
    tasks: Sequence[Task], send: Send, *, producers: int = 4, seed: int = 2
) -> list[float]:
    """Send every event from ``producers`` concurrent tasks, in a shuffled global order
    (a task's outcome often before its routing); return each send's duration."""
    events = [event for task in tasks for event in task.events]
    random.Random(seed).shuffle(events)
    durations: list[float] = []

    async def producer(share: list[tuple[str, dict[str, Any]]]) -> None:
        for n, (event_type, payload) in enumerate(share):
            started = time.perf_counter()
            await send(event_type, payload)
            durations.append(time.perf_counter() - started)
            if n % 50 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(producer(events[i::producers]) for i in range(producers)))
    return durations


def check_rows(rows: Sequence[asyncpg.Record], tasks: Sequence[Task]) -> None:
    """Exactly one row per task, and each field equal to what was sent."""
    by_id = {row["task_id"]: row for row in rows}
    assert len(rows) == len(by_id) == len(tasks)
    for task in tasks:
        row = by_id[task.task_id]
        for name, value in task.expected.items():
            stored = row[name]
            if isinstance(value, float):
                assert abs(stored - value) < 1e-6, (name, stored, value)
            else:
                assert stored == value, (task.task_id, name, stored, value)


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
