"""The caller's side of a capture call, and the step right behind it.

A ``capture_*`` call is the router's and the pool manager's hot path, so it does only what
must happen before it returns (:meth:`Intake.capture`): shape checks that reject a clearly
bad event with a reason, the event read into JSON text, and that text appended to the
journal (one ``os.write``: once the call has returned, a crash of the process cannot lose
the event, see :mod:`._journal`) and to the inbox. Everything else, the parsing back, the
full validation of each half, the correlation by task_id, the record's building and its
queueing, runs in :meth:`Intake.check`, scheduled on the event loop right after the call
(``call_soon``): off the caller's timing, but before the loop does anything else, so a bad
event is still rejected, logged and counted within the same loop iteration or two.
``flush()`` and ``shutdown()`` run it too, so nothing waits in the inbox past them.

What the call reads is what is stored: the event, and everything in it (dicts, lists,
a router's routing object by its public attributes, enums by value, datetimes), is read
into text at the call, so the caller may reuse or change any of it afterwards. The check
parses that same text, as a replay of the journal does: the record built after a crash
is the one that would have been built without it. Feedback without a ``feedback_id`` gets
one in that text, so a replay never stores it twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .._dead_letters import DeadLetter
from ._correlate import Correlator
from ._events import BadEvent, Half, parse_feedback, parse_half
from ._journal import Journal
from ._jsonable import event_json
from ._pipeline import Buffer, Counters, Entry
from ._spool import FeedbackItem
from .bus import (
    EXECUTION_OUTCOME,
    FEEDBACK,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
)

__all__ = ["Intake", "precheck"]

logger = logging.getLogger("orb_learning.telemetry")

_OUTCOMES = (EXECUTION_OUTCOME, POOL_EXECUTION_COMPLETE)
_KNOWN = (ROUTING_DECISION, POOL_EXECUTION_START, *_OUTCOMES, FEEDBACK)
_IDS = (str, uuid.UUID)
_Inboxed = tuple[int | None, str, str | dict[str, Any], float]
DeadLetterSink = Callable[[DeadLetter, tuple[int | None, ...]], None]


def _kind(value: Any) -> str:
    return type(value).__name__


def precheck(event_type: str, data: Any) -> Mapping[str, Any]:
    """The checks cheap enough for the caller's thread; BadEvent for an event that can
    never be part of a record (the rest is checked by ``parse_half``)."""
    if not isinstance(data, Mapping):
        raise BadEvent(f"an event must be a mapping, not {_kind(data)}")
    task_id = data.get("task_id")
    if task_id is None:
        raise BadEvent("task_id is missing")
    if not isinstance(task_id, _IDS):
        raise BadEvent(f"task_id must be a UUID or its string, not {_kind(task_id)}")
    if event_type == ROUTING_DECISION:
        if data.get("routing") is None:
            raise BadEvent("routing is missing")
    elif event_type in _OUTCOMES:
        if data.get("success") is None and data.get("status") is None:
            raise BadEvent("success (or status) is missing")
    elif event_type not in _KNOWN:
        raise BadEvent(f"unknown event type {event_type!r}")
    return data


def freeze(event_type: str, data: Mapping[str, Any]) -> str:
    """The event as the journal keeps it and the check parses it (feedback given an id)."""
    if event_type == FEEDBACK and not data.get("feedback_id"):
        data = {**data, "feedback_id": str(uuid.uuid4())}
    return event_json(data)


class Intake:
    """The inbox between the capture calls and the correlator, and its checker."""

    def __init__(
        self,
        correlator: Correlator,
        buffer: Buffer,
        counters: Counters,
        dead_letter: DeadLetterSink,
        journal: Journal,
        *,
        chunk: int = 256,
    ) -> None:
        self.correlator = correlator
        self.buffer = buffer
        self.counters = counters
        self.dead_letter = dead_letter
        self.journal = journal
        self.chunk = chunk  # events checked per loop callback: the loop stays responsive
        self.inbox: deque[_Inboxed] = deque()
        self.closed = False
        self.replaying = False  # the journal's leftovers: their records go first
        self._scheduled = False

    # -- the caller's thread ---------------------------------------------------------

    def capture(self, event_type: str, data: Any, received_at: datetime | None = None) -> None:
        """Check the shape, read the event into text, journal it, enqueue; never raises,
        never waits (beyond the journal's one write)."""
        try:
            if self.closed:
                raise BadEvent("the capture is shut down")
            text = freeze(event_type, precheck(event_type, data))
        except BadEvent as exc:
            self.reject(event_type, data, str(exc))
            return
        except Exception as exc:  # a bug (or a hostile mapping) must not reach the caller
            logger.exception("capture of a %s event failed", event_type)
            self.reject(event_type, data, f"{type(exc).__name__}: {exc}")
            return
        received = time.time() if received_at is None else received_at.timestamp()
        seq = self.journal.append(event_type, text, received)
        self.inbox.append((seq, event_type, text, received))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_check)

    def replay(self, seq: int, event_type: str, data: dict[str, Any], received: float) -> None:
        """An unsettled event of the journal's leftovers, already parsed and journaled."""
        self.inbox.append((seq, event_type, data, received))

    def reject(self, event_type: str, data: Any, reason: str) -> None:
        self.counters.rejected += 1
        task_id = data.get("task_id") if isinstance(data, Mapping) else None
        logger.warning("rejected %s event (task_id %r): %s", event_type, task_id, reason)

    # -- right behind it ---------------------------------------------------------------

    def _scheduled_check(self) -> None:
        self._scheduled = False
        self.check(self.chunk)
        if self.inbox and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_check)

    def check(self, limit: int | None = None) -> None:
        """Parse, validate, correlate and queue the inbox's events (``limit`` of them at
        most), oldest first."""
        inbox = self.inbox
        count = len(inbox) if limit is None else min(limit, len(inbox))
        for _ in range(count):
            seq, event_type, text, received = inbox.popleft()
            data: Any = text
            try:
                data = json.loads(text) if isinstance(text, str) else text
                self._settle(seq, event_type, data, datetime.fromtimestamp(received, UTC))
            except BadEvent as exc:
                self.reject(event_type, data, str(exc))
                self.journal.settle((seq,))
            except Exception as exc:
                logger.exception("checking a %s event failed", event_type)
                self.reject(event_type, data, f"{type(exc).__name__}: {exc}")
                self.journal.settle((seq,))
        if count:
            self.journal.rotate_if_due()

    def _settle(
        self, seq: int | None, event_type: str, data: dict[str, Any], received_at: datetime
    ) -> None:
        front = self.replaying
        if event_type == FEEDBACK:
            record, raw = parse_feedback(data, received_at)
            self.buffer.put(Entry(FeedbackItem(record, raw, received_at), (seq,)), front=front)
            return
        half = parse_half(event_type, data, received_at, seq)
        result, done = self.correlator.take(half)
        seqs = _seqs(done)
        if isinstance(result, DeadLetter):
            self.dead_letter(result, seqs)
        elif result is not None:
            self.buffer.put(Entry(result, seqs), front=front)
        else:
            self.journal.settle(seqs)  # dropped: a late pool start, a replaced half


def _seqs(halves: list[Half]) -> tuple[int | None, ...]:
    return tuple(h.seq for h in halves)
