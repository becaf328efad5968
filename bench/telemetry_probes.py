"""The telemetry benchmark's probes: embedders and a database that keep time, the timed
producers and the GC monitor."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.telemetry_stream import BASELINE_KINDS, CAPTURE_KINDS, JOURNAL_LINE
from orb_learning import ExecutionRecord, LearningDatabase, SentenceTransformerEmbedder

ns = time.perf_counter_ns
IDLE, STORING, ENCODING = 0, 1, 2  # the writer's state when a call starts


# -- embedders and database that keep time ----------------------------------------------


@dataclass
class Clock:
    """Time spent in ``encode`` or ``store_executions``: in progress (``active``), in
    total, and each call's span (start and end, ns)."""

    active: int = 0
    seconds: float = 0.0
    calls: int = 0
    items: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)

    def reset(self) -> None:
        self.seconds, self.calls, self.items, self.spans = 0.0, 0, 0, []

    @contextlib.contextmanager
    def timing(self, items: int) -> Iterator[None]:
        self.active += 1
        started = ns()
        try:
            yield
        finally:
            ended = ns()
            self.spans.append((started, ended))
            self.seconds += (ended - started) / 1e9
            self.calls += 1
            self.items += items
            self.active -= 1


class TimedModel(SentenceTransformerEmbedder):
    """The default model (all-MiniLM-L6-v2), with the time its ``encode`` takes."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self.clock.timing(len(texts)):
            return super().encode(texts)


class HashEmbedder:
    """A trivial :class:`orb_learning.Embedder`: a hash of the text -> a unit vector."""

    name = "sha256-384"
    dimension = 384

    def __init__(self) -> None:
        self.clock = Clock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self.clock.timing(len(texts)):
            rows = np.empty((len(texts), self.dimension), dtype=np.float32)
            for i, text in enumerate(texts):
                seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
                rows[i] = np.random.default_rng(seed).standard_normal(self.dimension)
            unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
            return unit


class TimedDatabase(LearningDatabase):
    """``LearningDatabase`` with the time its ``store_executions`` calls take (the writer's
    embedding plus database write), and optionally the batches it was given."""

    def __init__(self, dsn: str, *, embedder: Any, keep_batches: bool = False) -> None:
        super().__init__(dsn, embedder=embedder)
        self.clock = Clock()
        self.keep_batches = keep_batches
        self.batches: list[list[ExecutionRecord]] = []

    async def store_executions(self, records: Any, **options: Any) -> int:
        if self.keep_batches:
            self.batches.append(list(records))
        with self.clock.timing(len(records)):
            return await super().store_executions(records, **options)


# -- timed producers ------------------------------------------------------------------------


class Samples:
    """Per label: each call's start (ns), duration (ns) and the writer's state then."""

    def __init__(self) -> None:
        self.starts: dict[str, array[int]] = {}
        self.durations: dict[str, array[int]] = {}
        self.states: dict[str, array[int]] = {}
        for kind in (*CAPTURE_KINDS, *BASELINE_KINDS):
            self.starts[kind], self.durations[kind] = array("q"), array("q")
            self.states[kind] = array("b")

    def capture_durations(self) -> list[int]:
        return [d for kind in CAPTURE_KINDS for d in self.durations[kind]]


async def _nothing() -> None:
    return None


async def produce(
    capture: Any,
    calls: list[list[tuple[str, Any]]],
    samples: Samples,
    writer_state: Any,
    line_fd: int,
) -> None:
    """Run the producers concurrently; each times every call around its ``await``
    (perf_counter_ns) and yields to the event loop between calls, outside the timing.
    ``line_fd``: an O_APPEND file beside the capture's journal, for the write baseline."""

    async def producer(share: list[tuple[str, Any]]) -> None:
        for kind, payload in share:
            state = writer_state()
            if kind == BASELINE_KINDS[0]:
                t0 = ns()
                t1 = ns()
            elif kind == BASELINE_KINDS[1]:
                t0 = ns()
                await _nothing()
                t1 = ns()
            elif kind == BASELINE_KINDS[2]:
                t0 = ns()
                ExecutionRecord(**payload)
                t1 = ns()
            elif kind == BASELINE_KINDS[3]:
                t0 = ns()
                os.write(line_fd, JOURNAL_LINE)
                t1 = ns()
            else:
                method = getattr(capture, CAPTURE_KINDS[kind])
                t0 = ns()
                await method(payload)
                t1 = ns()
            samples.starts[kind].append(t0)
            samples.durations[kind].append(t1 - t0)
            samples.states[kind].append(state)
            await asyncio.sleep(0)

    await asyncio.gather(*(producer(share) for share in calls))


class GcMonitor:
    """Every collection of the cyclic GC while active: (start ns, end ns, generation)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, int, int]] = []
        self._started = 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = ns()
        else:
            self.pauses.append((self._started, ns(), int(info["generation"])))

    def __enter__(self) -> GcMonitor:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)
