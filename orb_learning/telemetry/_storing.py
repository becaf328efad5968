"""Storing a batch, and what the writer does with each kind of error.

Every call to the database goes through :meth:`Storer.call`, which sorts errors by what
retrying can do (``OrbLearningError.transient``, see :mod:`orb_learning.errors`):

- transient (the server away or restarting, a statement timeout, a serialization failure,
  a commit whose outcome is unknown: writes are upserts, so the same call is safe): retried
  by :func:`orb_learning.retry.retry` with capped exponential backoff, for as long as it
  takes; shutdown cuts the wait short;
- a rejection of a record (``ArgumentError``, ``DataError``, ``IntegrityError``, and
  SQLSTATE class 54, a value beyond a server limit): the batch is split, and only the
  records still refused alone become dead letters (a dead letter the database refuses in
  turn is appended to ``<stem>.refused.jsonl``);
- anything else (``SchemaNotReadyError``, ``InsufficientPrivilegeError``,
  ``EmbeddingModelError``, ``ConfigurationError``, an unclassified server error, a bug):
  no retry fixes it, and no record is to blame, so nothing is dead-lettered or dropped.
  It is logged at ERROR with the error's own advice, shown in ``stats()["database_error"]``,
  and the same call is tried again every ``recheck_interval`` seconds (for an operator's
  fix: a migration, a grant, the model's files); meanwhile the records wait in memory, then
  in the spool, and their events stay in the journal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from .._dead_letters import DeadLetter
from ..errors import (
    OrbLearningError,
    UnknownExecutionError,
)
from ..models import ExecutionRecord
from ..retry import Backoff, Stopped, retry
from ._pipeline import Counters, Entry, Settle
from ._spool import FeedbackItem, Spool, encode

if TYPE_CHECKING:
    import numpy as np

    from ..database import LearningDatabase

__all__ = ["EXECUTION_RECORD", "GiveUp", "Storer", "rejects_record"]

logger = logging.getLogger("orb_learning.telemetry")
EXECUTION_RECORD = "orb_learning.execution_record"  # a record's event type in a dead letter
_T = TypeVar("_T")


class GiveUp(Exception):
    """Shutting down while the database does not answer: leave the rest to the caller."""


def rejects_record(exc: BaseException) -> bool:
    """The database (or the library's validation) refuses this data, not the call."""
    return isinstance(exc, OrbLearningError) and exc.rejects_input


class Storer:
    """The writer's storing half: executions, feedback and dead letters, settled in the
    journal once stored."""

    def __init__(
        self,
        database: LearningDatabase,
        spool: Spool,
        counters: Counters,
        ready: asyncio.Event,
        settle: Settle,
        *,
        backoff: Backoff,
        recheck: float,
        feedback_wait: float,
    ) -> None:
        self.database = database
        self.spool = spool
        self.counters = counters
        self.ready = ready
        self.settle = settle
        self.backoff = backoff
        self.recheck = recheck
        self.feedback_wait = feedback_wait
        self.retries: list[tuple[float, Entry]] = []  # (due, feedback): task not stored yet
        self.letters: list[Entry] = []  # dead letters made while writing, not yet stored
        self.draining = asyncio.Event()
        self.blocked = False  # by an error no retry fixes, until a call succeeds

    def done(self, entry: Entry) -> None:
        entry.done = True
        self.settle(entry.seqs)

    async def embed(self, batch: list[Entry]) -> np.ndarray | None:
        """The vectors of the batch's executions, or None to let ``store_executions`` embed
        them itself (when the model refuses a text here, that path finds which record)."""
        texts = [e.item.embedding_text() for e in batch if isinstance(e.item, ExecutionRecord)]
        if not texts:
            return None
        try:
            return await self.call(lambda: self.database.embed(texts), "embedding")
        except GiveUp:
            raise
        except Exception as exc:
            logger.warning("embedding a batch ahead of its write failed: %s", exc)
            return None

    async def write(self, entries: list[Entry], vectors: np.ndarray | None = None) -> None:
        executions = [e for e in entries if isinstance(e.item, ExecutionRecord)]
        if executions:
            await self._store_executions(executions, vectors)
        for entry in entries:
            if isinstance(entry.item, FeedbackItem):
                await self._store_feedback(entry)
        self.letters += [e for e in entries if isinstance(e.item, DeadLetter)]
        await self.flush_letters()

    async def flush_letters(self) -> None:
        if self.letters:
            await self._store_letters(list(self.letters))
            self.letters = [e for e in self.letters if not e.done]

    async def _store_executions(self, entries: list[Entry], vectors: np.ndarray | None) -> None:
        records = [e.item for e in entries if isinstance(e.item, ExecutionRecord)]
        try:
            await self.call(
                lambda: self.database.store_executions(records, embeddings=vectors),
                "storing executions",
            )
        except GiveUp:
            raise
        except Exception as exc:  # call() raises only rejections of the data
            if len(entries) > 1:
                logger.warning("a batch was rejected (%s); storing it record by record", exc)
                for n, entry in enumerate(entries):
                    part = None if vectors is None else vectors[n : n + 1]
                    await self._store_executions([entry], part)
                return
            entry = entries[0]
            record = entry.item
            assert isinstance(record, ExecutionRecord)
            event = {"event_type": EXECUTION_RECORD, "data": record.model_dump(mode="json")}
            reason = f"rejected by the database: {exc}"
            self.letter(DeadLetter(record.task_id, reason, [event], record.timestamp), entry)
            return
        self.counters.written += len(entries)
        for entry in entries:
            self.done(entry)

    async def _store_feedback(self, entry: Entry) -> None:
        item = entry.item
        assert isinstance(item, FeedbackItem)
        loop = asyncio.get_running_loop()
        try:
            await self.call(lambda: self.database.store_feedback(item.record), "storing feedback")
        except GiveUp:
            raise
        except UnknownExecutionError:
            # Waited since this process first tried: a replayed feedback is old, and its
            # task may be further down the same replay.
            entry.since = entry.since or loop.time()
            if loop.time() - entry.since < self.feedback_wait:
                delay = min(10.0, max(0.1, self.feedback_wait / 8))
                self.retries.append((loop.time() + delay, entry))
                return
            reason = f"feedback for a task that is not stored (waited {self.feedback_wait:g} s)"
        except Exception as exc:
            reason = f"feedback rejected by the database: {exc}"
        else:
            self.counters.feedback_written += 1
            self.done(entry)
            return
        self.letter(DeadLetter(item.record.task_id, reason, [item.event], item.received_at), entry)

    async def retry_feedback(self, written: Callable[[], Awaitable[None]]) -> None:
        now = asyncio.get_running_loop().time()
        every = self.draining.is_set()
        due = [e for e in self.retries if every or e[0] <= now]
        if due:  # its task may be in the batch being written
            await written()
        for waiting in due:
            self.retries.remove(waiting)
            try:
                await self._store_feedback(waiting[1])
            except GiveUp:
                self.retries.append(waiting)
                raise
        await self.flush_letters()

    async def _store_letters(self, entries: list[Entry]) -> None:
        letters = [e.item for e in entries if isinstance(e.item, DeadLetter)]
        try:
            await self.call(
                lambda: self.database.store_dead_letters(letters),
                "storing dead letters",
            )
        except GiveUp:
            raise
        except Exception as exc:
            if len(entries) > 1:
                for entry in entries:
                    await self._store_letters([entry])
                return
            await self._refuse(entries[0], exc)
            return
        self.counters.dead_letters_written += len(entries)
        for entry in entries:
            self.done(entry)

    async def _refuse(self, entry: Entry, exc: BaseException) -> None:
        """A dead letter the database refuses: kept in a file for an operator."""
        assert isinstance(entry.item, DeadLetter)
        written, error = await self.spool.refuse([encode(entry.item)])
        if written:
            self.counters.dead_letters_refused += 1
            logger.error(
                "the database refuses a dead letter for task %s (%s): kept in %s",
                entry.item.task_id,
                exc,
                self.spool.refused_path,
            )
            self.done(entry)
        else:
            logger.error("a refused dead letter cannot be kept in a file either (%s)", error)

    def letter(self, letter: DeadLetter, source: Entry) -> None:
        """``source`` becomes a dead letter: it is settled when the letter is stored."""
        self.counters.dead_letters += 1
        logger.warning("dead letter for task %s: %s", letter.task_id, letter.reason)
        source.done = True
        self.letters.append(Entry(letter, source.seqs, spooled=source.spooled))

    # -- the error policy (see the module's docstring) -----------------------------------

    async def call(self, action: Callable[[], Awaitable[_T]], what: str) -> _T:
        """Run ``action`` until it succeeds or the data is rejected (raised)."""
        while True:
            await self._until_ready()
            try:
                result = await retry(action, backoff=self.backoff, what=what, stop=self.draining)
            except Stopped as exc:
                raise GiveUp from exc
            except Exception as exc:
                if rejects_record(exc) or isinstance(exc, UnknownExecutionError):
                    raise
                await self._blocked(exc, what)
                continue
            if self.blocked:
                self.blocked = False
                self.counters.database_error = None
                logger.warning("%s works again: the telemetry writes again", what)
            return result

    async def _until_ready(self) -> None:
        while not self.ready.is_set():
            if self.draining.is_set():
                raise GiveUp
            waits = [asyncio.ensure_future(self.ready.wait())]
            waits.append(asyncio.ensure_future(self.draining.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()

    async def _blocked(self, exc: Exception, what: str) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        if self.counters.database_error != message:
            logger.error(
                "%s; no retry fixes this, and nothing is dropped or dead-lettered for it: "
                "the telemetry keeps its records (memory, then the spool and the journal) "
                "and tries again every %g s",
                message,
                self.recheck,
                exc_info=None if isinstance(exc, OrbLearningError) else exc,
            )
        self.counters.database_error = message
        self.blocked = True
        if self.draining.is_set():
            raise GiveUp
        try:
            await asyncio.wait_for(self.draining.wait(), self.recheck)
        except TimeoutError:
            return
        raise GiveUp
