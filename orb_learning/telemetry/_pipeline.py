"""The path from a capture call to the writer: a bounded queue, its overflow, the spooler,
and the connection to the database.

A capture call only appends to memory (``Buffer.put``). Once the queue is full, or while
anything is spooled, items go to the overflow, which the spooler task appends to the spool
file: the order in which items were captured is the order in which they are stored (queue,
then spool, then overflow), so a task's record is never overwritten by an older version.

When the spool cannot be written (disk full), the overflow stays in memory, at most
``queue_size`` items more, and the writer stores it directly once the spool files are
replayed (so the order holds). Beyond that bound an item is let go: kept in the journal
when its events are there (it is rebuilt at the next start), else lost, counted in
``records_lost`` and logged at ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..retry import Backoff, retry
from ._spool import Item, Spool

if TYPE_CHECKING:
    from ..database import LearningDatabase

__all__ = ["Buffer", "Counters", "Entry", "Spooler", "connect"]

logger = logging.getLogger("orb_learning.telemetry")


@dataclass(slots=True)
class Entry:
    """An item on its way to the store, and the journal lines of the events it came from
    (None where an event could not be journaled); ``spooled``: read back from the spool,
    whose file keeps it until it is stored."""

    item: Item
    seqs: tuple[int | None, ...] = ()
    spooled: bool = False
    done: bool = False  # stored (or replaced by its dead letter): settled
    since: float = 0.0  # feedback: when this process first found its task missing

    @property
    def journaled(self) -> bool:
        """Rebuilt from the journal at the next start if it is not stored before."""
        return bool(self.seqs) and None not in self.seqs

    @property
    def version(self) -> int | None:
        """The newest of its journal lines: which of two records of a task is newer."""
        return max((s for s in self.seqs if s is not None), default=None)


@dataclass
class Counters:
    """Running totals since the capture started."""

    rejected: int = 0
    dead_letters: int = 0
    written: int = 0
    feedback_written: int = 0
    dead_letters_written: int = 0
    dead_letters_refused: int = 0  # refused by the database: kept in <stem>.refused.jsonl
    lost: int = 0  # items (and unmatched events) kept nowhere
    left_to_journal: int = 0  # let go from memory while the spool failed; in the journal
    database_error: str | None = None  # an error no retry fixes, until it is fixed


Settle = Callable[[Iterable[int | None]], None]


class Buffer:
    """The in-memory queue (at most ``queue_size`` items) and the overflow to spool."""

    def __init__(self, queue_size: int, batch_size: int, counters: Counters) -> None:
        self.queue: deque[Entry] = deque()
        self.overflow: deque[Entry] = deque()
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.counters = counters
        self.spooling = False  # True from the first spooled item until the spool is empty
        self.spool_error: str | None = None  # the spool cannot be appended to
        self.on_disk = 0  # items in spool files, not yet stored
        self.appends = 0  # appends to the spool file so far
        self.writer_wakeup = asyncio.Event()
        self.spooler_wakeup = asyncio.Event()

    @property
    def spooled(self) -> int:
        return self.on_disk + len(self.overflow)

    def put(self, entry: Entry, *, front: bool = False) -> None:
        """Never blocks: queue it, or leave it to the spooler once memory is full.
        ``front``: the journal's replay at a start, older than anything spooled."""
        if front:
            self.queue.append(entry)
        elif self.spooling or len(self.queue) >= self.queue_size:
            self.spooling = True
            if self.spool_error is not None and len(self.overflow) >= self.queue_size:
                self._let_go(entry)
                return
            self.overflow.append(entry)
            self.spooler_wakeup.set()
        else:
            self.queue.append(entry)
            if len(self.queue) >= self.batch_size:
                self.writer_wakeup.set()

    def _let_go(self, entry: Entry) -> None:
        """Neither memory nor the spool can take it: the journal may still hold it."""
        if entry.journaled:
            self.counters.left_to_journal += 1
            return
        if not self.counters.lost:
            logger.error(
                "telemetry lost: memory is full (queue_size x 2) and the spool cannot be "
                "written (%s); stats() counts what is lost in records_lost",
                self.spool_error,
            )
        self.counters.lost += 1

    def take(self, count: int) -> list[Entry]:
        return [self.queue.popleft() for _ in range(min(count, len(self.queue)))]

    def take_overflow(self, count: int) -> list[Entry]:
        return [self.overflow.popleft() for _ in range(min(count, len(self.overflow)))]


class Spooler:
    """Background task: appends the overflow to the spool, a chunk and one fsync at a time;
    what is appended is settled in the journal."""

    def __init__(self, buffer: Buffer, spool: Spool, settle: Settle, *, chunk: int = 1000) -> None:
        self.buffer = buffer
        self.spool = spool
        self.settle = settle
        self.chunk = chunk
        self.busy = False
        self.retry_after = 1.0
        self._stopping = False
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    async def run(self) -> None:
        buffer = self.buffer
        while True:
            if not buffer.overflow:
                self._idle.set()
                if self._stopping:
                    return
                buffer.spooler_wakeup.clear()
                await buffer.spooler_wakeup.wait()
                continue
            self._idle.clear()
            entries = [buffer.overflow[i] for i in range(min(self.chunk, len(buffer.overflow)))]
            self.busy = True
            try:
                written, error = await self.spool.append(
                    [e.item for e in entries], [e.version for e in entries]
                )
            finally:
                self.busy = False
            for entry in entries[:written]:
                buffer.overflow.popleft()
                self.settle(entry.seqs)
            buffer.on_disk += written
            buffer.appends += bool(written)
            buffer.writer_wakeup.set()
            if written < len(entries):
                self._failed(error)
                if self._stopping:  # shutdown accounts for the rest
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.retry_after)
            elif buffer.spool_error is not None:
                logger.warning("the spool %s is written again", self.spool.path)
                buffer.spool_error = None

    def _failed(self, error: str | None) -> None:
        if self.buffer.spool_error is None:
            logger.error(
                "cannot append to the spool %s (%s): the overflow stays in memory (up to "
                "queue_size more items) and is stored directly when the database answers",
                self.spool.path,
                error,
            )
        self.buffer.spool_error = error or "unknown error"
        self._idle.set()  # wait_idle(): nothing more reaches the disk for now

    @property
    def failing(self) -> bool:
        return self.buffer.spool_error is not None

    async def wait_idle(self) -> None:
        """Until the overflow is on disk, or the spool fails."""
        while (self.buffer.overflow or self.busy) and not (self.failing and not self.busy):
            self.buffer.spooler_wakeup.set()
            await self._idle.wait()
            await asyncio.sleep(0)

    def stop(self) -> None:
        """Finish what is in the overflow (or give up at the first failure), then end."""
        self._stopping = True
        self._stop.set()
        self.buffer.spooler_wakeup.set()


async def connect(
    database: LearningDatabase,
    ready: asyncio.Event,
    counters: Counters,
    *,
    backoff: Backoff,
    recheck: float,
) -> None:
    """Initialize the database in the background (the capture itself starts at once:
    producers must not fail because the store is down). A server that is away is waited
    out with ``backoff``; an error no retry fixes (schema not migrated, privilege, model,
    settings) is logged at ERROR and tried again every ``recheck`` seconds, for an
    operator's fix, while the capture keeps what it captures."""
    while not database.initialized:
        try:
            await retry(database.initialize, backoff=backoff, what="connecting to the database")
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            if counters.database_error != message:
                logger.error(
                    "the telemetry cannot open its database (%s); it keeps what it captures "
                    "(in memory, then the spool and the journal) and tries again every %g s",
                    message,
                    recheck,
                )
            counters.database_error = message
            await asyncio.sleep(recheck)
    if counters.database_error is not None:
        logger.warning("the telemetry's database is open again")
    counters.database_error = None
    ready.set()
