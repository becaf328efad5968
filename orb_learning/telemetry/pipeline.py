"""The path from a capture call to the writer: a bounded queue, its overflow, the spooler.

A capture call only appends to memory (``Buffer.put``). Once the queue is full, or while
anything is spooled, items go to the overflow, which the spooler task appends to the spool
file: the order in which items were captured is the order in which they are stored (queue,
then spool, then overflow), so a task's record is never overwritten by an older version.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .spool import Item, Spool

if TYPE_CHECKING:
    from ..database import LearningDatabase

__all__ = ["Buffer", "Counters", "Spooler", "connect"]

logger = logging.getLogger("orb_learning.telemetry")


@dataclass
class Counters:
    """Running totals since the capture started."""

    rejected: int = 0
    dead_letters: int = 0
    written: int = 0
    feedback_written: int = 0
    dead_letters_written: int = 0


class Buffer:
    """The in-memory queue (at most ``queue_size`` items) and the overflow to spool."""

    def __init__(self, queue_size: int, batch_size: int) -> None:
        self.queue: deque[Item] = deque()
        self.overflow: deque[Item] = deque()
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.spooling = False  # True from the first spooled item until the spool is empty
        self.on_disk = 0  # items in spool files, not yet stored
        self.appends = 0  # appends to the spool file so far
        self.writer_wakeup = asyncio.Event()
        self.spooler_wakeup = asyncio.Event()

    @property
    def spooled(self) -> int:
        return self.on_disk + len(self.overflow)

    def put(self, item: Item) -> None:
        """Never blocks: queue it, or leave it to the spooler once memory is full."""
        if self.spooling or len(self.queue) >= self.queue_size:
            self.spooling = True
            self.overflow.append(item)
            self.spooler_wakeup.set()
        else:
            self.queue.append(item)
            if len(self.queue) >= self.batch_size:
                self.writer_wakeup.set()

    def take(self, count: int) -> list[Item]:
        return [self.queue.popleft() for _ in range(min(count, len(self.queue)))]


class Spooler:
    """Background task: appends the overflow to the spool, a chunk and one fsync at a time."""

    def __init__(self, buffer: Buffer, spool: Spool, *, chunk: int = 1000) -> None:
        self.buffer = buffer
        self.spool = spool
        self.chunk = chunk
        self.busy = False
        self._stopping = False
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
            items = [buffer.overflow[i] for i in range(min(self.chunk, len(buffer.overflow)))]
            self.busy = True
            try:
                await self.spool.append(items)
            except OSError:
                logger.exception("cannot append to the spool %s; retrying", self.spool.path)
                await asyncio.sleep(1.0)
                continue
            finally:
                self.busy = False
            for _ in items:
                buffer.overflow.popleft()
            buffer.on_disk += len(items)
            buffer.appends += 1
            buffer.writer_wakeup.set()

    async def wait_idle(self) -> None:
        """Until the overflow is on disk."""
        while self.buffer.overflow or self.busy:
            self.buffer.spooler_wakeup.set()
            await self._idle.wait()
            await asyncio.sleep(0)

    def stop(self) -> None:
        """Finish what is in the overflow, then end."""
        self._stopping = True
        self.buffer.spooler_wakeup.set()


async def connect(database: LearningDatabase, ready: asyncio.Event, max_backoff: float) -> None:
    """Initialize the database, retrying while it cannot be reached (the capture itself
    starts at once: producers must not fail because the store is down)."""
    attempt = 0
    while not database.initialized:
        try:
            await database.initialize()
        except Exception as exc:
            delay = min(max_backoff, 0.2 * 2**attempt)
            if attempt % 10 == 0:
                logger.warning("database not available (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            attempt += 1
    ready.set()
