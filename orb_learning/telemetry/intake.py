"""The caller's side of a capture call, and the step right behind it.

A ``capture_*`` call is the router's and the pool manager's hot path, so it does only what
must happen before it returns (:meth:`Intake.capture`): shape checks that reject a clearly
bad event with a reason, a snapshot of the event, and an append to the inbox. Everything
else, the full validation of each half, the correlation by task_id, the record's building
and its queueing, runs in :meth:`Intake.check`, scheduled on the event loop right after the
call (``call_soon``): off the caller's timing, but before the loop does anything else, so
a bad event is still rejected, logged and counted within the same loop iteration or two.
``flush()`` and ``shutdown()`` run it too, so nothing waits in the inbox past them.

The snapshot contract: the event dict, and the dicts, lists, tuples and sets inside it
(``task_data``, ``files``, ``metadata``...), are copied at the call, so changes the caller
makes to them afterwards never reach the store or a dead letter. Other objects are kept by
reference and read later: a router's routing object, enums, datetimes. Do not mutate such
an object after passing it (the router's ``ModelRouting`` is made per decision).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from ..dead_letters import DeadLetter
from .bus import (
    EXECUTION_OUTCOME,
    FEEDBACK,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
)
from .correlate import Correlator
from .events import BadEvent, parse_feedback, parse_half
from .pipeline import Buffer, Counters
from .spool import FeedbackItem

__all__ = ["Intake", "precheck", "snapshot"]

logger = logging.getLogger("orb_learning.telemetry")

_OUTCOMES = (EXECUTION_OUTCOME, POOL_EXECUTION_COMPLETE)
_KNOWN = (ROUTING_DECISION, POOL_EXECUTION_START, *_OUTCOMES, FEEDBACK)
_IDS = (str, UUID)
_MAX_DEPTH = 32  # deeper (or cyclic) structures are kept by reference below this
_LEAVES = frozenset({str, int, float, bool, type(None), UUID, datetime})  # immutable


def _copy(value: Any, depth: int) -> Any:
    """Containers copied (recursively), anything else as it is. (Leaves are tested inline:
    a call per string or number would double the cost of a typical event.)"""
    kind, deeper = type(value), depth + 1
    if kind in _LEAVES or depth > _MAX_DEPTH:
        return value
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, Mapping)):
        return {k: v if type(v) in _LEAVES else _copy(v, deeper) for k, v in value.items()}
    if kind is list or (kind is not tuple and isinstance(value, list)):
        return [v if type(v) in _LEAVES else _copy(v, deeper) for v in value]
    if kind is tuple:
        return tuple([v if type(v) in _LEAVES else _copy(v, deeper) for v in value])
    if isinstance(value, set):
        return set(value)
    return value


def snapshot(data: Mapping[str, Any]) -> dict[str, Any]:
    """The event as it is now: a dict of its keys, its containers copied (see above)."""
    return {k: v if type(v) in _LEAVES else _copy(v, 1) for k, v in data.items()}


def _kind(value: Any) -> str:
    return type(value).__name__


def precheck(event_type: str, data: Any) -> dict[str, Any]:
    """The checks cheap enough for the caller's thread, then the snapshot; BadEvent for an
    event that can never be part of a record (the rest is checked by ``parse_half``)."""
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
    return snapshot(data)


class Intake:
    """The inbox between the capture calls and the correlator, and its checker."""

    def __init__(
        self,
        correlator: Correlator,
        buffer: Buffer,
        counters: Counters,
        dead_letter: Callable[[DeadLetter], None],
        *,
        chunk: int = 256,
    ) -> None:
        self.correlator = correlator
        self.buffer = buffer
        self.counters = counters
        self.dead_letter = dead_letter
        self.chunk = chunk  # events checked per loop callback: the loop stays responsive
        self.inbox: deque[tuple[str, dict[str, Any], datetime]] = deque()
        self.closed = False
        self._scheduled = False

    # -- the caller's thread ---------------------------------------------------------

    def capture(self, event_type: str, data: Any, received_at: datetime | None = None) -> None:
        """Check the shape, snapshot, enqueue; never raises, never waits."""
        try:
            if self.closed:
                raise BadEvent("the capture is shut down")
            raw = precheck(event_type, data)
        except BadEvent as exc:
            self.reject(event_type, data, str(exc))
            return
        except Exception as exc:  # a bug (or a hostile mapping) must not reach the caller
            logger.exception("capture of a %s event failed", event_type)
            self.reject(event_type, data, f"{type(exc).__name__}: {exc}")
            return
        self.inbox.append((event_type, raw, received_at or datetime.now(UTC)))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_check)

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
        """Validate, correlate and queue the inbox's events (``limit`` of them at most),
        oldest first."""
        inbox = self.inbox
        count = len(inbox) if limit is None else min(limit, len(inbox))
        for _ in range(count):
            event_type, data, received_at = inbox.popleft()
            try:
                self._settle(event_type, data, received_at)
            except BadEvent as exc:
                self.reject(event_type, data, str(exc))
            except Exception as exc:
                logger.exception("checking a %s event failed", event_type)
                self.reject(event_type, data, f"{type(exc).__name__}: {exc}")

    def _settle(self, event_type: str, data: dict[str, Any], received_at: datetime) -> None:
        if event_type == FEEDBACK:
            record, raw = parse_feedback(data, received_at)
            self.buffer.put(FeedbackItem(record, raw, received_at))
            return
        result = self.correlator.add(parse_half(event_type, data, received_at))
        if isinstance(result, DeadLetter):
            self.dead_letter(result)
        elif result is not None:
            self.buffer.put(result)
