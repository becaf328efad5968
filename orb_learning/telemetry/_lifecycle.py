"""The capture's start and stop, beyond the background tasks: the journal's replay, the
halves carried forward, and what a shutdown does with what is left, with its report."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from .._dead_letters import DeadLetter
from ..models import ExecutionRecord
from ._correlate import Correlator
from ._events import Half
from ._journal import Journal, Replayed
from ._jsonable import event_json
from ._pipeline import Buffer, Counters
from ._spool import FeedbackItem, Item
from ._storing import EXECUTION_RECORD

if TYPE_CHECKING:
    from ..database import LearningDatabase
    from ._intake import Intake
    from ._spool import Spool
    from ._writer import Writer

__all__ = ["ShutdownReport", "carry_forward", "finish", "replay"]

logger = logging.getLogger("orb_learning.telemetry")
_T = TypeVar("_T")


@dataclass(frozen=True)
class ShutdownReport:
    """What ``TelemetryCapture.shutdown()`` left where. Items are executions, feedback and
    dead letters; every item captured is in exactly one of the stored counts (this run),
    ``spooled``, ``in_journal`` or ``lost``; halves that had not met their other half are in
    ``halves_in_journal``, ``halves_spooled`` or ``lost``."""

    records_stored: int
    feedback_stored: int
    dead_letters_stored: int  # including the ones made at shutdown (below)
    spooled: int  # items in the spool files, stored at the next start
    in_journal: int  # items rebuilt from the journal at the next start
    halves_in_journal: int
    halves_spooled: int
    dead_lettered_at_shutdown: int  # neither stored nor spoolable: kept as dead letters
    lost: int  # items and halves kept nowhere (this run)
    events_not_journaled: int  # events the journal could not take (this run)
    timed_out: bool  # the timeout cut the writing short
    reasons: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Nothing lost."""
        return self.lost == 0


def replay(intake: Intake, buffer: Buffer, events: list[Replayed]) -> dict[UUID, int]:
    """Feed the journal's leftovers through the intake, their items ahead of everything
    (they are older than the spool's); the version of each execution rebuilt, by task."""
    intake.replaying = True
    try:
        for seq, event_type, data, received in events:
            intake.replay(seq, event_type, data, received)
        intake.check()
    finally:
        intake.replaying = False
    newer: dict[UUID, int] = {}
    for entry in buffer.queue:
        if isinstance(entry.item, ExecutionRecord) and entry.version is not None:
            task_id = entry.item.task_id
            newer[task_id] = max(newer.get(task_id, 0), entry.version)
    return newer


def carry_forward(journal: Journal, correlator: Correlator) -> int:
    """Write again the halves that hold an older segment alone (waiting for their other
    half), so that the segment can be deleted; each task's halves together, in order."""
    stale = journal.stale()
    if not stale:
        return 0
    pending = correlator.pending()
    waiting: Counter[int] = Counter()
    tasks: defaultdict[int, list[UUID]] = defaultdict(list)
    for task_id, halves in pending.items():
        for half in halves:
            segment = None if half.seq is None else journal.segment_of(half.seq)
            if segment in stale:
                waiting[segment] += 1
                tasks[segment].append(task_id)
    moved = 0
    for segment in [s for s, n in stale.items() if waiting[s] == n]:
        for task_id in dict.fromkeys(tasks[segment]):
            seqs = _rewrite(journal, pending[task_id])
            if seqs is None:
                return moved  # the journal cannot be written: try again later
            correlator.renumber(task_id, seqs)
            journal.settle(seqs)
            moved += len(seqs)
    return moved


def _rewrite(journal: Journal, halves: list[Half]) -> dict[int, int] | None:
    seqs: dict[int, int] = {}
    for half in halves:
        if half.seq is None:
            continue
        seq = journal.append(half.event_type, event_json(half.data), half.received_at.timestamp())
        if seq is None:
            return None
        seqs[half.seq] = seq
    return seqs


async def _within(work: Awaitable[_T], deadline: float, default: _T) -> _T:
    """``work``, or ``default`` once the deadline passes (a stuck disk or server)."""
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        if isinstance(work, asyncio.Future | asyncio.Task):
            work.cancel()
        elif hasattr(work, "close"):
            work.close()
        return default
    try:
        return await asyncio.wait_for(work, remaining)
    except TimeoutError:
        return default


async def finish(
    *,
    writer: Writer,
    buffer: Buffer,
    correlator: Correlator,
    spool: Spool,
    journal: Journal,
    database: LearningDatabase,
    counters: Counters,
    ready: asyncio.Event,
    deadline: float,
    reasons: list[str],
    cut: bool,
) -> ShutdownReport:
    """What the writer could not store in time: left in the journal where all its events
    are there (rebuilt at the next start), else spooled, else (the disk full) stored as
    dead letters when the database answers, else lost: counted and said why."""
    entries = [
        *writer.in_flight,
        *buffer.queue,
        *(e for _, e in writer.retries),
        *writer.letters,
        *buffer.overflow,
    ]
    writer.in_flight, writer.retries, writer.letters = [], [], []
    buffer.queue.clear()
    buffer.overflow.clear()
    live = [e for e in entries if not e.done and not e.spooled]
    in_journal = [e for e in live if e.journaled]
    homeless = [e for e in live if not e.journaled]
    halves = correlator.take_all()
    loose = [h for h in halves if h.seq is None]
    timed_out = cut or asyncio.get_running_loop().time() >= deadline
    written, error = await _within(
        spool.write_first([e.item for e in homeless], [e.version for e in homeless]),
        deadline,
        (0, "the shutdown timeout passed"),
    )
    for entry in homeless[:written]:
        journal.settle(entry.seqs)
    buffer.on_disk += written
    halves_written, half_error = await _within(
        spool.append(loose), deadline, (0, "the shutdown timeout passed")
    )
    rest: list[Item | Half] = [e.item for e in homeless[written:]]
    rest += loose[halves_written:]
    if rest:
        reasons.append(f"the spool could not take them: {error or half_error}")
    lettered = await _letters(rest, database, ready, writer, deadline, error or half_error)
    counters.dead_letters_written += lettered
    counters.lost += len(rest) - lettered
    if lettered:
        logger.warning("stored %d items the spool could not take as dead letters", lettered)
    return ShutdownReport(
        records_stored=counters.written,
        feedback_stored=counters.feedback_written,
        dead_letters_stored=counters.dead_letters_written,
        spooled=buffer.on_disk,
        in_journal=len(in_journal) + counters.left_to_journal,
        halves_in_journal=len(halves) - len(loose),
        halves_spooled=halves_written,
        dead_lettered_at_shutdown=lettered,
        lost=counters.lost,
        events_not_journaled=journal.not_journaled,
        timed_out=timed_out,
        reasons=tuple(reasons),
    )


async def _letters(
    rest: list[Item | Half],
    database: LearningDatabase,
    ready: asyncio.Event,
    writer: Writer,
    deadline: float,
    error: str | None,
) -> int:
    """The last resort, when the database answers: what neither it (in time) nor the disk
    took, kept as dead letters (no model needed), with its data."""
    if not rest or not ready.is_set() or writer.blocked:
        return 0
    reason = f"not stored before shutdown, and the spool could not take it ({error})"
    letters = [_as_letter(item, reason) for item in rest]

    async def store() -> int:
        return await database.store_dead_letters(letters)

    try:
        return await _within(store(), deadline, 0)
    except Exception as exc:
        logger.error("the last %d items could not be stored as dead letters: %s", len(rest), exc)
        return 0


def _as_letter(item: Item | Half, reason: str) -> DeadLetter:
    if isinstance(item, DeadLetter):
        return DeadLetter(item.task_id, f"{item.reason}; {reason}", item.events, item.first_seen_at)
    if isinstance(item, Half):
        return DeadLetter(item.task_id, reason, [item.as_event()], item.received_at)
    if isinstance(item, FeedbackItem):
        return DeadLetter(item.record.task_id, reason, [item.event], item.received_at)
    event = {"event_type": EXECUTION_RECORD, "data": item.model_dump(mode="json")}
    return DeadLetter(item.task_id, reason, [event], item.timestamp)
