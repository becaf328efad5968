"""``TelemetryCapture``: the orchestrator's events in, execution records out, none lost.

A capture call checks the event's shape, reads it into JSON text and appends that to the
journal (one ``os.write``: durable against a crash of the process once the call returns,
see :mod:`._journal`) and to an inbox, then returns: it never waits on the database, the
embedding model or the disk's flushing, and does not validate records (see :mod:`._intake`).
Right behind it, on the loop, each event is validated, correlated and queued; background
tasks do the rest: connecting (retried while the server is down), embedding and writing
batches, spooling what memory cannot hold, and turning halves that never meet into dead
letters. See :mod:`orb_learning.telemetry` for the events' keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from .._dead_letters import DeadLetter
from ..database import LearningDatabase
from ..retry import Backoff
from ._correlate import Correlator
from ._counters import CaptureCounters
from ._events import BadEvent, parse_time
from ._intake import Intake
from ._journal import Durability, Journal
from ._lifecycle import ShutdownReport, carry_forward, finish, replay
from ._pipeline import Buffer, Counters, Entry, Spooler, connect
from ._spool import DEFAULT_SPOOL_PATH, Spool
from ._writer import Writer
from .bus import (
    EVENT_TYPES,
    EXECUTION_OUTCOME,
    FEEDBACK,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
    MessageBus,
)

__all__ = ["ShutdownReport", "TelemetryCapture"]

logger = logging.getLogger("orb_learning.telemetry")


class TelemetryCapture(CaptureCounters):
    """Capture routing decisions, pool executions, outcomes and feedback into the store.

    ``database`` defaults to ``LearningDatabase()`` (closed by ``shutdown()``); a database
    passed in is initialized if needed (in the background, retried while the server is
    down) and left open. ``batch_size``/``batch_timeout``: a batch is written when it is
    full or every ``batch_timeout`` seconds. ``queue_size``: items held in memory before
    the spool at ``spool_path`` takes the rest. ``orphan_ttl``: seconds a half waits for
    its other half before it becomes a dead letter. ``feedback_wait``: seconds feedback
    for a task not (yet) stored is retried. ``max_backoff``: the longest pause between
    two attempts to reach the server. ``shutdown_timeout``: how long ``shutdown()`` takes
    at most. ``recheck_interval``: seconds between attempts after an error no retry fixes
    (schema not migrated, a missing privilege, the model's files): nothing is dropped
    meanwhile, see :mod:`._storing`.

    Every event is journaled before its capture call returns (see :mod:`._journal`):
    ``durability="write"`` (the default) survives a crash of the process; a crash of the
    machine can lose the events of the last ~35 s (what the kernel had not written back).
    ``durability="fsync"`` fsyncs the journal every ``fsync_interval`` seconds in the
    background (never in the call): a machine crash then loses at most that interval.
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
        durability: Durability = "write",
        fsync_interval: float = 1.0,
        recheck_interval: float = 60.0,
    ) -> None:
        if batch_size < 1 or queue_size < 1:
            raise ValueError("batch_size and queue_size must be at least 1")
        timeouts = (batch_timeout, orphan_ttl, feedback_wait, max_backoff, shutdown_timeout)
        if min(*timeouts, fsync_interval, recheck_interval) <= 0:
            raise ValueError("timeouts, TTLs, intervals and backoffs must be positive")
        if durability not in ("write", "fsync"):
            raise ValueError(f"durability must be 'write' or 'fsync', not {durability!r}")
        self.message_bus = message_bus
        self._owns_database = database is None
        # Settings from the environment (server, model, backend); the database keeps its
        # embedder across retried initialize() calls.
        self.database = database or LearningDatabase()
        self._counters = Counters()
        self._buffer = Buffer(queue_size, batch_size, self._counters)
        self._correlator = Correlator(orphan_ttl)
        self._spool = Spool(spool_path if spool_path is not None else DEFAULT_SPOOL_PATH)
        self._journal = Journal(
            self._spool.directory,
            self._spool.stem,
            durability=durability,
            fsync_interval=fsync_interval,
        )
        self._intake = Intake(
            self._correlator, self._buffer, self._counters, self._dead_letter, self._journal
        )
        self._spooler = Spooler(self._buffer, self._spool, self._journal.settle)
        self._ready = asyncio.Event()
        self._backoff = Backoff(initial=min(0.1, max_backoff), maximum=max_backoff)
        self._recheck = recheck_interval
        self._writer = Writer(
            self.database,
            self._buffer,
            self._spool,
            self._spooler,
            self._counters,
            self._ready,
            self._journal.settle,
            batch_timeout=batch_timeout,
            backoff=self._backoff,
            recheck=recheck_interval,
            feedback_wait=feedback_wait,
        )
        self._shutdown_timeout = shutdown_timeout
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._state = "new"
        self._stopping = False
        self._stopped = asyncio.Event()
        self._report: ShutdownReport | None = None

    @property
    def spool_path(self) -> os.PathLike[str]:
        return self._spool.path

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        """Take the spool, replay what a previous run left (the journal's events first,
        then the spool), start the background tasks and subscribe to the bus. Never fails
        because the database is down."""
        if self._state != "new":
            return
        self._state = "starting"
        try:
            await self._spool.lock()
            on_disk, pending = await self._spool.scan()
            leftovers = await self._spool.call(self._journal.load)
        except BaseException:
            self._state = "new"
            raise
        intake, buffer = self._intake, self._buffer
        early = list(intake.inbox), list(buffer.queue)  # captured before: newer than all
        intake.inbox.clear()
        buffer.queue.clear()
        self._writer.newer = replay(intake, buffer, leftovers)
        if on_disk or pending:
            buffer.on_disk += on_disk
            buffer.spooling = True  # the writer replays, then deletes, the leftovers
            buffer.overflow.extendleft(reversed(early[1]))
        else:
            buffer.queue.extend(early[1])
        intake.inbox.extend(early[0])
        for event in pending:  # a previous version's unmatched halves
            try:
                received_at = parse_time(event.get("received_at"), datetime.now(UTC))
            except BadEvent:
                received_at = None
            self._capture(str(event.get("event_type")), event.get("data"), received_at)
        if leftovers or on_disk or pending:
            logger.info(
                "replaying %d journaled events, %d spooled items, %d pending events",
                len(leftovers),
                on_disk,
                len(pending),
            )
        self._journal.start()
        self._start(
            "connect",
            connect(
                self.database,
                self._ready,
                self._counters,
                backoff=self._backoff,
                recheck=self._recheck,
            ),
        )
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

    async def shutdown(self, timeout: float | None = None) -> ShutdownReport:
        """Store what can be stored, keep the rest for the next start, and stop; returns
        by ``timeout`` seconds (default ``shutdown_timeout``) whatever the disk and the
        server do. Kept for the next start: what the journal holds (all of whose events
        are journaled), else in the spool; what neither the database nor the disk takes
        is stored as dead letters if the database answers, else lost: counted in the
        report, ``stats()`` and one log line at ERROR."""
        if self._stopping:
            await self._stopped.wait()
            assert self._report is not None
            return self._report
        self._stopping = True
        loop = asyncio.get_running_loop()
        total = self._shutdown_timeout if timeout is None else max(0.0, timeout)
        end = loop.time() + total
        # Writing as usual until ``deadline``; then keeping the rest (spool, dead letters)
        # until ``last``; then closing files and the database.
        deadline, last = end - min(3.0, total * 0.3), end - min(0.5, total * 0.05)
        reasons: list[str] = []
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
        cut = not await self._wait("writer", deadline)
        if cut:
            reasons.append(f"the shutdown timeout ({total:g} s) cut the writing short")
        self._spooler.stop()
        if "spooler" not in self._tasks:
            self._start("spooler", self._spooler.run())
        await self._wait("spooler", deadline)
        self._explain(reasons)
        report = await finish(
            writer=self._writer,
            buffer=self._buffer,
            correlator=self._correlator,
            spool=self._spool,
            journal=self._journal,
            database=self.database,
            counters=self._counters,
            ready=self._ready,
            deadline=last,
            reasons=reasons,
            cut=cut,
        )
        await self._stop("connect")
        await self._journal.close(end - loop.time())
        await self._spool.close(max(0.01, end - loop.time()))
        if self._owns_database:
            try:
                await asyncio.wait_for(self.database.close(), max(0.01, end - loop.time()))
            except Exception as exc:  # a timeout included: the report matters more
                logger.warning("closing the database at shutdown: %r", exc)
        self._report = report
        self._stopped.set()
        if report.lost:
            logger.error(
                "telemetry capture stopped, %d items or events LOST (%s); %d stored, %d "
                "spooled and %d items + %d halves in the journal for the next start",
                report.lost,
                "; ".join(report.reasons),
                report.records_stored,
                report.spooled,
                report.in_journal,
                report.halves_in_journal,
            )
        else:
            logger.info("telemetry capture stopped: %s", report)
        return report

    def _explain(self, reasons: list[str]) -> None:
        if self._counters.database_error is not None:
            reasons.append(f"the database refused to work: {self._counters.database_error}")
        elif not self._ready.is_set():
            reasons.append("the database could not be reached")
        if self._journal.not_journaled:
            why = self._journal.last_error or "captured before initialize()"
            reasons.append(f"{self._journal.not_journaled} events could not be journaled ({why})")
        if self._buffer.spool_error is not None:
            reasons.append(f"the spool could not be written: {self._buffer.spool_error}")

    async def _wait(self, name: str, deadline: float) -> bool:
        """Until the task ends, or the deadline: then cancel it. Whether it ended."""
        task = self._tasks.get(name)
        if task is None:
            return True
        remaining = deadline - asyncio.get_running_loop().time()
        done, _ = await asyncio.wait([task], timeout=max(0.0, remaining))
        if not done:
            await self._stop(name)
        return bool(done)

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
            for letter, halves in self._correlator.expire_halves(datetime.now(UTC)):
                self._dead_letter(letter, tuple(h.seq for h in halves))
            carry_forward(self._journal, self._correlator)

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

    def _dead_letter(self, letter: DeadLetter, seqs: tuple[int | None, ...]) -> None:
        self._counters.dead_letters += 1
        logger.warning("dead letter for task %s: %s", letter.task_id, letter.reason)
        self._buffer.put(Entry(letter, seqs), front=self._intake.replaying)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped", task.get_name(), exc_info=task.exception())
