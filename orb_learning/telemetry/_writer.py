"""The background writer: batches from the queue and the spool into the store.

It takes up to ``batch_size`` items, or what is there every ``batch_timeout`` seconds,
embeds the executions' descriptions (the embedding service runs the model off the loop),
then stores them in one ``store_executions`` call with those vectors, then the feedback,
then the dead letters. The two stages overlap: batch N is written while batch N+1 is
embedded, so the database's time hides behind the model's instead of adding to it. Writes
still happen one batch at a time, in the order the batches were taken. What is stored is
settled in the journal.

A server that is away is waited out (retrying the same batch, with capped exponential
backoff) while new telemetry piles up in the queue, then the spool; a record the database
rejects becomes a dead letter; an error no retry fixes stops the writing, not the capture,
until it is fixed. :mod:`._storing` has the storing and that policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from ..models import ExecutionRecord
from ._pipeline import Buffer, Counters, Entry, Settle, Spooler
from ._spool import Spool, decode_entry
from ._storing import EXECUTION_RECORD, GiveUp, Storer

if TYPE_CHECKING:
    import numpy as np

    from ..database import LearningDatabase
    from ..retry import Backoff

__all__ = ["EXECUTION_RECORD", "Writer"]

logger = logging.getLogger("orb_learning.telemetry")


class Writer(Storer):
    """Drains the buffer and the spool into a :class:`LearningDatabase`."""

    def __init__(
        self,
        database: LearningDatabase,
        buffer: Buffer,
        spool: Spool,
        spooler: Spooler,
        counters: Counters,
        ready: asyncio.Event,
        settle: Settle,
        *,
        batch_timeout: float,
        backoff: Backoff,
        recheck: float,
        feedback_wait: float,
    ) -> None:
        super().__init__(
            database,
            spool,
            counters,
            ready,
            settle,
            backoff=backoff,
            recheck=recheck,
            feedback_wait=feedback_wait,
        )
        self.buffer = buffer
        self.spooler = spooler
        self.batch_timeout = batch_timeout
        self.in_flight: list[Entry] = []  # taken from the queue, not yet stored (in order)
        self._writing: asyncio.Task[None] | None = None  # the batch being written
        self.hurry = False  # flush(): write what is queued without waiting for a full batch
        self.newer: dict[UUID, int] = {}  # at a start: task -> journal version replayed

    def drain(self) -> None:
        """Store what is queued and spooled, retry waiting feedback once, then end; give
        up (leaving the rest to the caller) at the first failure to reach the server."""
        self.draining.set()
        self.buffer.writer_wakeup.set()

    async def run(self) -> None:
        buffer = self.buffer
        try:
            while True:
                await self._wait_for_work()
                batch = buffer.take(buffer.batch_size)
                if batch:
                    self.in_flight += batch
                    vectors = await self.embed(batch)  # while the previous batch is written
                    await self._written()  # one write at a time, in order
                    self._writing = asyncio.get_running_loop().create_task(
                        self._write_taken(batch, vectors), name="orb-telemetry-write"
                    )
                await self.retry_feedback(self._written)
                if not buffer.queue and buffer.spooling:
                    await self._written()
                    await self._replay()
                if self.draining.is_set() and not buffer.queue and not buffer.spooling:
                    await self._written()
                    if not buffer.queue:
                        return
        except GiveUp:
            return
        finally:
            writing, self._writing = self._writing, None
            if writing is not None:  # what it did not store is still in in_flight
                if not writing.done():  # the writer itself was cancelled, or gave up
                    writing.cancel()
                with contextlib.suppress(asyncio.CancelledError, GiveUp):
                    await writing

    async def _written(self) -> None:
        """Until the batch being written is stored (its errors are the writer's)."""
        writing = self._writing
        if writing is not None:
            await asyncio.shield(writing)
            self._writing = None

    async def _write_taken(self, batch: list[Entry], vectors: np.ndarray | None) -> None:
        await self.write(batch, vectors)
        del self.in_flight[: len(batch)]  # stored: the oldest items in flight

    async def _wait_for_work(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_timeout
        buffer = self.buffer
        while not self.draining.is_set() and len(buffer.queue) < buffer.batch_size:
            if (buffer.spooling and not buffer.queue) or (self.hurry and buffer.queue):
                return
            due = min((d for d, _ in self.retries), default=deadline)
            timeout = min(deadline, due) - loop.time()
            if timeout <= 0:
                return
            buffer.writer_wakeup.clear()
            try:
                await asyncio.wait_for(buffer.writer_wakeup.wait(), timeout)
            except TimeoutError:
                return

    # -- the spool ---------------------------------------------------------------------

    async def _replay(self) -> None:
        """Store the spool's segments in order, then what the spooler could not append
        (the spool failing), then leave spooling mode once the spool and the overflow are
        both empty (new items then go to memory again)."""
        buffer = self.buffer
        while True:
            for segment in await self.spool.segments():
                await self._replay_segment(segment)
            appends = buffer.appends
            if await self.spool.rotate() is not None:
                continue
            if buffer.overflow and self.spooler.failing and not self.spooler.busy:
                batch = buffer.take_overflow(buffer.batch_size)  # in order: nothing on disk
                self.in_flight += batch
                await self.write(batch)
                del self.in_flight[: len(batch)]
            elif buffer.overflow or self.spooler.busy:
                await self.spooler.wait_idle()
                if self.spooler.failing and self.draining.is_set():
                    return  # shutdown: the rest is accounted for there
            elif buffer.appends == appends:  # nothing reached the file since it was empty
                buffer.spooling = False
                buffer.on_disk = 0
                self.newer.clear()
                return

    async def _replay_segment(self, segment: Path) -> None:
        async for lines in self.spool.read(segment, self.buffer.batch_size):
            entries: list[Entry] = []
            counted = 0  # as the start's scan counted them: every item but pending events
            for line in lines:
                try:
                    item, version = decode_entry(line)
                except (ValueError, KeyError, TypeError) as exc:
                    logger.error("skipped an unreadable line of %s: %s", segment, exc)
                    continue
                if isinstance(item, dict):  # pending events were re-fed at start
                    continue
                counted += 1
                if not self._superseded(item, version):
                    entries.append(Entry(item, spooled=True))
            await self.write(entries)
            self.buffer.on_disk = max(0, self.buffer.on_disk - counted)
        await self.spool.delete(segment)

    def _superseded(self, item: object, version: int | None) -> bool:
        """A spooled execution older than the one the journal's replay rebuilt at this
        start (already stored, or queued ahead of the spool): storing it would go back."""
        if not self.newer or not isinstance(item, ExecutionRecord):
            return False
        newest = self.newer.get(item.task_id)
        return newest is not None and (version is None or version < newest)
