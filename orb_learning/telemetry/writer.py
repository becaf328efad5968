"""The background writer: batches from the queue and the spool into the store.

It takes up to ``batch_size`` items, or what is there every ``batch_timeout`` seconds,
embeds the executions' descriptions (the embedding service runs the model off the loop),
then stores them in one ``store_executions`` call with those vectors, then the feedback,
then the dead letters. The two stages overlap: batch N is written while batch N+1 is
embedded, so the database's time hides behind the model's instead of adding to it. Writes
still happen one batch at a time, in the order the batches were taken. An unreachable server is
waited out with capped exponential backoff, retrying the same batch, while new telemetry
piles up in the queue and then the spool. A batch the database rejects is retried one
record at a time, and only the records it still rejects become dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..dead_letters import DeadLetter
from ..errors import (
    DatabaseError,
    DatabaseUnavailableError,
    IntegrityError,
    InvalidRecordError,
    NotInitializedError,
    UnknownExecutionError,
)
from ..models import ExecutionRecord
from .pipeline import Buffer, Counters, Spooler
from .spool import FeedbackItem, Item, Spool, decode

if TYPE_CHECKING:
    import numpy as np

    from ..database import LearningDatabase

__all__ = ["EXECUTION_RECORD", "Writer"]

logger = logging.getLogger("orb_learning.telemetry")
EXECUTION_RECORD = "orb_learning.execution_record"  # the event type of a record in a dead letter
_T = TypeVar("_T")
_TRANSIENT = (DatabaseUnavailableError, NotInitializedError, OSError)
_REJECTED = (IntegrityError, InvalidRecordError, ValueError)
_UNEXPECTED_ATTEMPTS = 5  # other errors: retried this often, then treated as rejections


class _GiveUp(Exception):
    """Shutting down while the database does not answer: leave the rest to the spool."""


class Writer:
    """Drains the buffer and the spool into a :class:`LearningDatabase`."""

    def __init__(
        self,
        database: LearningDatabase,
        buffer: Buffer,
        spool: Spool,
        spooler: Spooler,
        counters: Counters,
        ready: asyncio.Event,
        *,
        batch_timeout: float,
        max_backoff: float,
        feedback_wait: float,
    ) -> None:
        self.database = database
        self.buffer = buffer
        self.spool = spool
        self.spooler = spooler
        self.counters = counters
        self.ready = ready
        self.batch_timeout = batch_timeout
        self.max_backoff = max_backoff
        self.feedback_wait = feedback_wait
        self.in_flight: list[Item] = []  # taken from the queue, not yet stored (in order)
        self._writing: asyncio.Task[None] | None = None  # the batch being written
        self.retries: list[tuple[float, FeedbackItem]] = []  # (due, item): task not stored yet
        self.letters: list[DeadLetter] = []  # made while writing, not yet stored
        self._draining = asyncio.Event()
        self.hurry = False  # flush(): write what is queued without waiting for a full batch

    def drain(self) -> None:
        """Store what is queued and spooled, retry waiting feedback once, then end; give
        up (leaving the rest to the caller) at the first failure to reach the server."""
        self._draining.set()
        self.buffer.writer_wakeup.set()

    async def run(self) -> None:
        buffer = self.buffer
        try:
            while True:
                await self._wait_for_work()
                batch = buffer.take(buffer.batch_size)
                if batch:
                    self.in_flight += batch
                    vectors = await self._embed(batch)  # while the previous batch is written
                    await self._written()  # one write at a time, in order
                    self._writing = asyncio.get_running_loop().create_task(
                        self._write_taken(batch, vectors), name="orb-telemetry-write"
                    )
                await self._retry_feedback()
                if not buffer.queue and buffer.spooling:
                    await self._written()
                    await self._replay()
                if self._draining.is_set() and not buffer.queue and not buffer.spooling:
                    await self._written()
                    if not buffer.queue:
                        return
        except _GiveUp:
            return
        finally:
            writing, self._writing = self._writing, None
            if writing is not None:  # what it did not store is still in in_flight
                if not writing.done():  # the writer itself was cancelled, or gave up
                    writing.cancel()
                with contextlib.suppress(asyncio.CancelledError, _GiveUp):
                    await writing

    async def _written(self) -> None:
        """Until the batch being written is stored (its errors are the writer's)."""
        writing = self._writing
        if writing is not None:
            await asyncio.shield(writing)
            self._writing = None

    async def _write_taken(self, batch: list[Item], vectors: np.ndarray | None) -> None:
        await self._write(batch, vectors)
        del self.in_flight[: len(batch)]  # stored: the oldest items in flight

    async def _embed(self, batch: list[Item]) -> np.ndarray | None:
        """The vectors of the batch's executions, or None to let ``store_executions`` embed
        them itself (when the model fails here, that path sorts out which record is bad)."""
        texts = [i.embedding_text() for i in batch if isinstance(i, ExecutionRecord)]
        if not texts:
            return None
        try:
            return await self._call(lambda: self.database.embed(texts), "embedding")
        except _GiveUp:
            raise
        except Exception as exc:
            logger.warning("embedding a batch ahead of its write failed: %s", exc)
            return None

    async def _wait_for_work(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_timeout
        buffer = self.buffer
        while not self._draining.is_set() and len(buffer.queue) < buffer.batch_size:
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
        """Store the spool's segments in order, then leave spooling mode once the spool
        and the overflow are both empty (new items then go to memory again)."""
        buffer = self.buffer
        while True:
            for segment in await self.spool.segments():
                await self._replay_segment(segment)
            appends = buffer.appends
            if await self.spool.rotate() is not None:
                continue
            if buffer.overflow or self.spooler.busy:
                await self.spooler.wait_idle()
            elif buffer.appends == appends:  # nothing reached the file since it was empty
                buffer.spooling = False
                buffer.on_disk = 0
                return

    async def _replay_segment(self, segment: Path) -> None:
        async for lines in self.spool.read(segment, self.buffer.batch_size):
            items: list[Item] = []
            for line in lines:
                try:
                    item = decode(line)
                except (ValueError, KeyError, TypeError) as exc:
                    logger.error("skipped an unreadable line of %s: %s", segment, exc)
                    continue
                if not isinstance(item, dict):  # pending events were re-fed at start
                    items.append(item)
            await self._write(items)
            self.buffer.on_disk = max(0, self.buffer.on_disk - len(items))
        await self.spool.delete(segment)

    # -- storing -----------------------------------------------------------------------

    async def _write(self, items: list[Item], vectors: np.ndarray | None = None) -> None:
        executions = [i for i in items if isinstance(i, ExecutionRecord)]
        if executions:
            await self._store_executions(executions, vectors)
        for item in items:
            if isinstance(item, FeedbackItem):
                await self._store_feedback(item)
        self.letters += [i for i in items if isinstance(i, DeadLetter)]
        await self._flush_letters()

    async def _flush_letters(self) -> None:
        if self.letters:
            await self._store_letters(list(self.letters))
            self.letters.clear()

    async def _store_executions(
        self, records: list[ExecutionRecord], vectors: np.ndarray | None = None
    ) -> None:
        try:
            await self._call(
                lambda: self.database.store_executions(records, embeddings=vectors),
                "storing executions",
            )
        except _REJECTED as exc:
            if len(records) > 1:
                logger.warning("a batch was rejected (%s); storing it record by record", exc)
                for n, record in enumerate(records):
                    await self._store_executions(
                        [record], None if vectors is None else vectors[n : n + 1]
                    )
                return
            record = records[0]
            event = {"event_type": EXECUTION_RECORD, "data": record.model_dump(mode="json")}
            reason = f"rejected by the database: {exc}"
            self._letter(DeadLetter(record.task_id, reason, [event], record.timestamp))
            return
        self.counters.written += len(records)

    async def _store_feedback(self, item: FeedbackItem) -> None:
        try:
            await self._call(lambda: self.database.store_feedback(item.record), "storing feedback")
        except UnknownExecutionError:
            waited = (datetime.now(UTC) - item.received_at).total_seconds()
            if waited < self.feedback_wait:
                delay = min(10.0, max(0.1, self.feedback_wait / 8))
                self.retries.append((asyncio.get_running_loop().time() + delay, item))
                return
            reason = f"feedback for a task that is not stored (waited {self.feedback_wait:g} s)"
        except _REJECTED as exc:
            reason = f"feedback rejected by the database: {exc}"
        else:
            self.counters.feedback_written += 1
            return
        self._letter(DeadLetter(item.record.task_id, reason, [item.event], item.received_at))

    async def _retry_feedback(self) -> None:
        now = asyncio.get_running_loop().time()
        every = self._draining.is_set()
        due = [e for e in self.retries if every or e[0] <= now]
        if due:  # its task may be in the batch being written
            await self._written()
        for entry in due:
            self.retries.remove(entry)
            try:
                await self._store_feedback(entry[1])
            except _GiveUp:
                self.retries.append(entry)
                raise
        await self._flush_letters()

    async def _store_letters(self, letters: list[DeadLetter]) -> None:
        try:
            await self._call(
                lambda: self.database.store_dead_letters(letters), "storing dead letters"
            )
        except _GiveUp:
            raise
        except Exception as exc:
            if len(letters) > 1:
                for letter in letters:
                    await self._store_letters([letter])
                return
            logger.error("dropped a dead letter the database refuses (%s): %r", exc, letters[0])
            return
        self.counters.dead_letters_written += len(letters)

    def _letter(self, letter: DeadLetter) -> None:
        self.counters.dead_letters += 1
        logger.warning("dead letter for task %s: %s", letter.task_id, letter.reason)
        self.letters.append(letter)

    async def _call(self, action: Callable[[], Awaitable[_T]], what: str) -> _T:
        """Run ``action`` until it succeeds or is rejected; wait out unavailability."""
        attempt = unexpected = 0
        while True:
            await self._until_ready()
            try:
                return await action()
            except (UnknownExecutionError, *_REJECTED):
                raise
            except Exception as exc:
                state = getattr(exc, "sqlstate", None)
                if isinstance(exc, DatabaseError) and state is not None and state[:2] == "22":
                    raise ValueError(f"{exc} (SQLSTATE {state})") from exc  # a data exception
                # No SQLSTATE: the client's side (a connection closed under it, a restart).
                if not isinstance(exc, _TRANSIENT) and not (
                    isinstance(exc, DatabaseError) and state is None
                ):
                    unexpected += 1
                    if unexpected >= _UNEXPECTED_ATTEMPTS:
                        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
                    logger.exception("%s failed unexpectedly; retrying", what)
                await self._pause(attempt, f"{what} failed ({exc})")
            attempt += 1

    async def _until_ready(self) -> None:
        while not self.ready.is_set():
            if self._draining.is_set():
                raise _GiveUp
            await _first(self.ready.wait(), self._draining.wait())

    async def _pause(self, attempt: int, message: str) -> None:
        if self._draining.is_set():
            raise _GiveUp
        delay = min(self.max_backoff, 0.1 * 2**attempt) * random.uniform(0.75, 1.0)
        if attempt == 0 or attempt % 10 == 0:
            logger.warning("%s; retrying in %.1f s", message, delay)
        try:
            await asyncio.wait_for(self._draining.wait(), delay)
        except TimeoutError:
            return
        raise _GiveUp


async def _first(*waits: Awaitable[object]) -> None:
    """Until the first of ``waits`` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
