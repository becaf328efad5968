"""``TelemetryCapture``: the orchestrator's events in, execution records out, none lost.

A capture call checks the event's shape, snapshots it and puts it in an inbox, then
returns: it never waits on the database, the embedding model or the disk, and does not
validate records (see :mod:`.intake`). Right behind it, on the loop, each event is
validated, correlated and queued; background tasks do the rest: connecting (retried while
the server is down), embedding and writing batches, spooling what memory cannot hold, and
turning halves that never meet into dead letters. See :mod:`orb_learning.telemetry`
for the events' keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from ..database import LearningDatabase
from ..dead_letters import DeadLetter
from .bus import (
    EVENT_TYPES,
    EXECUTION_OUTCOME,
    FEEDBACK,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
    MessageBus,
)
from .correlate import BOTH, OUTCOME, ROUTING, START, Correlator
from .events import BadEvent, parse_time
from .intake import Intake
from .pipeline import Buffer, Counters, Spooler, connect
from .spool import DEFAULT_SPOOL_PATH, Spool
from .writer import Writer

__all__ = ["TelemetryCapture"]

logger = logging.getLogger("orb_learning.telemetry")


class TelemetryCapture:
    """Capture routing decisions, pool executions, outcomes and feedback into the store.

    ``database`` defaults to ``LearningDatabase()`` (closed by ``shutdown()``); a database
    passed in is initialized if needed (in the background, retried while the server is
    down) and left open. ``batch_size``/``batch_timeout``: a batch is written when it is
    full or every ``batch_timeout`` seconds. ``queue_size``: items held in memory before
    the spool at ``spool_path`` takes the rest. ``orphan_ttl``: seconds a half waits for
    its other half before it becomes a dead letter. ``feedback_wait``: seconds feedback
    for a task not (yet) stored is retried. ``max_backoff``: the longest pause between
    two attempts to reach the server. ``shutdown_timeout``: how long ``shutdown()`` keeps
    writing before it spools the rest.
    """

    def __init__(
        self,
        message_bus: MessageBus | None = None,
        database: LearningDatabase | None = None,
        *,
        batch_size: int = 100,
        batch_timeout: float = 5.0,
        queue_size: int = 10_000,
        orphan_ttl: float = 3600.0,
        spool_path: str | os.PathLike[str] | None = None,
        feedback_wait: float = 60.0,
        max_backoff: float = 5.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if batch_size < 1 or queue_size < 1:
            raise ValueError("batch_size and queue_size must be at least 1")
        if min(batch_timeout, orphan_ttl, feedback_wait, max_backoff, shutdown_timeout) <= 0:
            raise ValueError("timeouts, TTLs and backoffs must be positive")
        self.message_bus = message_bus
        self._owns_database = database is None
        # Settings from the environment (server, model, backend); the database keeps its
        # embedder across retried initialize() calls.
        self.database = database or LearningDatabase()
        self._counters = Counters()
        self._buffer = Buffer(queue_size, batch_size)
        self._correlator = Correlator(orphan_ttl)
        self._intake = Intake(self._correlator, self._buffer, self._counters, self._dead_letter)
        self._spool = Spool(spool_path if spool_path is not None else DEFAULT_SPOOL_PATH)
        self._spooler = Spooler(self._buffer, self._spool)
        self._ready = asyncio.Event()
        self._writer = Writer(
            self.database,
            self._buffer,
            self._spool,
            self._spooler,
            self._counters,
            self._ready,
            batch_timeout=batch_timeout,
            max_backoff=max_backoff,
            feedback_wait=feedback_wait,
        )
        self._max_backoff = max_backoff
        self._shutdown_timeout = shutdown_timeout
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._state = "new"
        self._stopping = False

    @property
    def spool_path(self) -> os.PathLike[str]:
        return self._spool.path

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        """Take the spool, re-feed what a previous run left, start the background tasks
        and subscribe to the bus. Never fails because the database is down."""
        if self._state != "new":
            return
        self._state = "starting"
        try:
            await self._spool.lock()
            on_disk, pending = await self._spool.scan()
        except BaseException:
            self._state = "new"
            raise
        if on_disk or pending:  # older than anything captured yet: keep the order
            self._buffer.on_disk += on_disk
            self._buffer.overflow.extendleft(reversed(self._buffer.queue))
            self._buffer.queue.clear()
            self._buffer.spooling = True  # the writer replays, then deletes, the leftovers
        for event in pending:
            try:
                received_at = parse_time(event.get("received_at"), datetime.now(UTC))
            except BadEvent:
                received_at = None
            self._capture(str(event.get("event_type")), event.get("data"), received_at)
        if on_disk or pending:
            logger.info("replaying %d spooled items, %d pending events", on_disk, len(pending))
        self._start("connect", connect(self.database, self._ready, self._max_backoff))
        self._start("writer", self._writer.run())
        self._start("spooler", self._spooler.run())
        self._start("sweeper", self._sweep())
        self._state = "running"
        if self.message_bus is not None:
            for event_type in EVENT_TYPES:  # capture_<name> for orb_learning.<name>
                name = "capture_" + event_type.removeprefix("orb_learning.")
                self.message_bus.subscribe(event_type, getattr(self, name))

    async def flush(self, timeout: float | None = None) -> bool:
        """Write what is queued and spooled now; True once all of it is stored (False at
        the timeout, e.g. while the server is down). Halves still waiting stay waiting."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._writer.hurry = True
        try:
            self._intake.check()
            while self.records_queued or self._buffer.spooled or self._writer.letters:
                if deadline is not None and loop.time() >= deadline:
                    return False
                self._intake.check()
                self._buffer.writer_wakeup.set()
                await asyncio.sleep(0.01)
            return True
        finally:
            self._writer.hurry = False

    async def shutdown(self, timeout: float | None = None) -> None:
        """Store what can be stored within ``timeout`` seconds (default
        ``shutdown_timeout``), spool the rest, unmatched halves included, and stop."""
        if self._stopping:
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._shutdown_timeout if timeout is None else timeout)
        drain = getattr(self.message_bus, "drain", None)
        if callable(drain):  # events already published are captured, not lost
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drain(), max(0.0, deadline - loop.time()))
        was_started, self._state = self._state != "new", "closed"
        self._intake.closed = True
        self._intake.check()  # what was captured becomes records (or waiting halves)
        if not was_started:  # leftovers of a previous run stay older than this run's items
            await self._spool.lock()
            await self._spool.scan()
        await self._stop("sweeper")
        self._writer.drain()
        writer = self._tasks.get("writer")
        if writer is not None:
            done, _ = await asyncio.wait([writer], timeout=max(0.0, deadline - loop.time()))
            if not done:
                await self._stop("writer")
        self._spooler.stop()
        if "spooler" in self._tasks:
            await self._tasks["spooler"]
        else:
            await self._spooler.run()
        await self._spool_the_rest(first=was_started)
        await self._stop("connect")
        await self._spool.close()
        if self._owns_database:
            await self.database.close()
        stats = self.stats()
        logger.info("telemetry capture stopped: %s", stats)

    async def _spool_the_rest(self, *, first: bool) -> None:
        """What memory holds was captured before what the spool holds (``first``): it is
        written as the segment replayed first. Unmatched halves go last."""
        writer, buffer = self._writer, self._buffer
        items = [*writer.in_flight, *buffer.queue, *(i for _, i in writer.retries), *writer.letters]
        writer.in_flight, writer.retries, writer.letters = [], [], []
        buffer.queue.clear()
        await (self._spool.write_first(items) if first else self._spool.append(items))
        halves = self._correlator.take_all()
        await self._spool.append(halves)
        buffer.on_disk += len(items)
        if items or halves:
            logger.info("spooled %d items and %d unmatched events", len(items), len(halves))

    def _start(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"orb-telemetry-{name}")
        task.add_done_callback(_log_failure)
        self._tasks[name] = task

    async def _stop(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep(self) -> None:
        """Turn the halves that waited ``orphan_ttl`` seconds into dead letters."""
        interval = min(max(self._correlator.ttl / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            for letter in self._correlator.expire(datetime.now(UTC)):
                self._dead_letter(letter)

    # -- capture -----------------------------------------------------------------------

    async def capture_routing_decision(self, data: Mapping[str, Any]) -> None:
        """The router's decision for a task (``task_id``, ``routing``, ``task_data``...)."""
        self._capture(ROUTING_DECISION, data)

    async def capture_pool_execution_start(self, data: Mapping[str, Any]) -> None:
        """A pool started the task (``pool_id``, ``task_id``, ``timestamp``)."""
        self._capture(POOL_EXECUTION_START, data)

    async def capture_pool_execution_complete(self, data: Mapping[str, Any]) -> None:
        """A pool finished the task: an outcome, or a raw pool result plus ``task_id``."""
        self._capture(POOL_EXECUTION_COMPLETE, data)

    async def capture_execution_outcome(self, data: Mapping[str, Any]) -> None:
        """How the task went (``success``, ``duration_seconds``, ``quality_score``...)."""
        self._capture(EXECUTION_OUTCOME, data)

    async def capture_feedback(self, data: Mapping[str, Any]) -> None:
        """A user's rating of a task (``task_id``, ``rating``, ``feedback_type``...)."""
        self._capture(FEEDBACK, data)

    def _capture(self, event_type: str, data: Any, received_at: datetime | None = None) -> None:
        """The caller's side: shape checks, snapshot, inbox; never raises, never waits."""
        self._intake.capture(event_type, data, received_at)

    def _dead_letter(self, letter: DeadLetter) -> None:
        self._counters.dead_letters += 1
        logger.warning("dead letter for task %s: %s", letter.task_id, letter.reason)
        self._buffer.put(letter)

    # -- counters ----------------------------------------------------------------------
    # Each first checks what is still in the inbox (see .intake): a counter read right
    # after a capture call counts that event, as if it had been checked during the call.

    @property
    def routing_decisions_waiting(self) -> int:
        """Routing decisions waiting for their outcome."""
        self._intake.check()
        return self._correlator.counts[ROUTING]

    @property
    def outcomes_waiting(self) -> int:
        """Outcomes (or pool completions) waiting for their routing decision."""
        self._intake.check()
        return self._correlator.counts[OUTCOME]

    @property
    def records_queued(self) -> int:
        """Items in memory on their way to the store (the batches being embedded and
        written included)."""
        self._intake.check()
        return len(self._buffer.queue) + len(self._writer.in_flight)

    @property
    def records_spooled(self) -> int:
        """Items beyond the memory bound: in the spool, or about to be appended to it."""
        self._intake.check()
        return self._buffer.spooled

    @property
    def events_rejected(self) -> int:
        """Events refused: by the call's shape checks, or by the full validation right
        behind the call."""
        self._intake.check()
        return self._counters.rejected

    @property
    def dead_letters(self) -> int:
        """Dead letters made since start (orphans, rejected records, unknown feedback)."""
        self._intake.check()
        return self._counters.dead_letters

    @property
    def records_written(self) -> int:
        """Executions stored since start."""
        return self._counters.written

    def get_routing_decisions_count(self) -> int:
        """The first version's name for :attr:`routing_decisions_waiting`."""
        return self.routing_decisions_waiting

    def get_execution_outcomes_count(self) -> int:
        """The first version's name for :attr:`outcomes_waiting`."""
        return self.outcomes_waiting

    def stats(self) -> dict[str, Any]:
        """Every counter at once (for logs, health checks and benchmarks)."""
        self._intake.check()
        counts = self._correlator.counts
        return {
            "routing_decisions_waiting": counts[ROUTING],
            "outcomes_waiting": counts[OUTCOME],
            "pool_starts_waiting": counts[START],
            "waiting_for_pool_start": counts[BOTH],
            "records_queued": self.records_queued,
            "records_spooled": self.records_spooled,
            "events_rejected": self._counters.rejected,
            "dead_letters": self._counters.dead_letters,
            "dead_letters_written": self._counters.dead_letters_written,
            "records_written": self._counters.written,
            "feedback_written": self._counters.feedback_written,
            "feedback_waiting": len(self._writer.retries),
            "database_ready": self._ready.is_set(),
        }


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped", task.get_name(), exc_info=task.exception())
