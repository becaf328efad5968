"""What the telemetry part times with: a model and a database that keep the spans of their
calls, the timed producers, and the statistics of what they timed.

The events come from :func:`orb_learning.testing.make_stream` (routing as a mapping or as
an object with an Enum tier, a pool start, an execution outcome or a pool's raw result),
so the capture sees every shape an orchestrator sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orb_learning import ExecutionRecord, LearningDatabase, SentenceTransformerEmbedder
from orb_learning.telemetry import (
    EXECUTION_OUTCOME,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
)
from orb_learning.testing import HashEmbedder, Task

ns = time.perf_counter_ns
METHODS = {
    ROUTING_DECISION: "capture_routing_decision",
    POOL_EXECUTION_START: "capture_pool_execution_start",
    EXECUTION_OUTCOME: "capture_execution_outcome",
    POOL_EXECUTION_COMPLETE: "capture_pool_execution_complete",
}
Call = tuple[str, dict[str, Any], str]
"""(event type, payload, task id)."""


@dataclass
class Clock:
    """The spans (start, end ns) of an embedder's ``encode`` or a store's writes."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    active: int = 0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        self.active += 1
        started = ns()
        try:
            yield
        finally:
            self.spans.append((started, ns()))
            self.active -= 1

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.spans) / 1e9


class TimedModel(SentenceTransformerEmbedder):
    """The default model (all-MiniLM-L6-v2 on the default backend), its encode timed."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self.clock.timing():
            return super().encode(texts)


class TimedHash(HashEmbedder):
    """The deterministic hash embedder of :mod:`orb_learning.testing`, its encode timed."""

    def __init__(self) -> None:
        self.clock = Clock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self.clock.timing():
            return super().encode(texts)


class TimedDatabase(LearningDatabase):
    """``LearningDatabase`` keeping the spans of its ``store_executions`` calls (the
    writer embeds ahead, so these are the database's writes), the batches it was given and
    when each task's row was written."""

    def __init__(self, url: str, embedder: Any) -> None:
        super().__init__(url, embedder=embedder)
        self.clock = Clock()
        self.batches: list[list[ExecutionRecord]] = []
        self.written_at: dict[str, int] = {}

    async def store_executions(self, records: Any, **options: Any) -> int:
        self.batches.append(list(records))
        with self.clock.timing():
            written = await super().store_executions(records, **options)
        at = ns()
        self.written_at.update((str(r.task_id), at) for r in self.batches[-1])
        return written


def shares(tasks: Sequence[Task], producers: int) -> list[list[Call]]:
    """Each producer's calls: its tasks' events in order, except that every fifth task's
    outcome comes before its routing decision (as a bus may deliver them)."""
    out: list[list[Call]] = [[] for _ in range(producers)]
    for index, task in enumerate(tasks):
        routing, start, outcome = task.events
        events = [outcome, routing, start] if index % 5 == 4 else [routing, start, outcome]
        out[index % producers] += [(kind, payload, str(task.task_id)) for kind, payload in events]
    return out


async def produce(capture: Any, calls: list[list[Call]]) -> tuple[list[int], dict[str, int]]:
    """The producers, concurrently: each times every call around its ``await`` and yields to
    the loop between calls (outside the timing). Returns every call's duration (ns) and when
    each task's last event was captured."""
    durations: list[int] = []
    completed: dict[str, int] = {}

    async def producer(share: list[Call]) -> None:
        for kind, payload, task_id in share:
            method = getattr(capture, METHODS[kind])
            started = ns()
            await method(payload)
            ended = ns()
            durations.append(ended - started)
            completed[task_id] = ended
            await asyncio.sleep(0)

    await asyncio.gather(*(producer(share) for share in calls))
    return durations, completed


def microseconds(values_ns: Sequence[int]) -> dict[str, float]:
    """calls, p50, p99, p99.9 and max in microseconds (nearest rank)."""
    ordered = sorted(values_ns)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, max(0, int(q * n + 0.999999) - 1))] / 1000, 2)

    return {
        "calls": n,
        "p50": rank(0.5),
        "p99": rank(0.99),
        "p99.9": rank(0.999),
        "max": round(ordered[-1] / 1000, 1),
    }


def overlap_seconds(spans: Sequence[tuple[int, int]], others: Sequence[tuple[int, int]]) -> float:
    """The time (s) where one of ``spans`` and one of ``others`` (each disjoint) run at once."""
    a, b = sorted(spans), sorted(others)
    i = j = total = 0
    while i < len(a) and j < len(b):
        total += max(0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total / 1e9
