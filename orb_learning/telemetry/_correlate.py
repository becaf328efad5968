"""Correlation by task_id: the halves of a task meet here, in whatever order they arrive.

A task's record is built as soon as its routing decision and its outcome are both known
(and its duration: given, or derived from its pool start). Halves that wait longer than
the TTL become dead letters with their raw events, so nothing waits forever and nothing
vanishes silently, as the first version's unmatched items did.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from pydantic import ValidationError

from .._dead_letters import DeadLetter
from ..models import ExecutionRecord
from ._events import Half, build_record
from .bus import POOL_EXECUTION_START, ROUTING_DECISION

__all__ = ["Correlator", "Pending"]

logger = logging.getLogger("orb_learning.telemetry")

ROUTING, OUTCOME, START, BOTH = "routing", "outcome", "start", "both"


@dataclass
class Pending:
    """The halves of one task seen so far."""

    routing: Half | None = None
    start: Half | None = None
    outcome: Half | None = None

    def halves(self) -> list[Half]:
        return [h for h in (self.routing, self.start, self.outcome) if h is not None]

    @property
    def first_seen(self) -> datetime:
        return min(h.received_at for h in self.halves())

    @property
    def state(self) -> str:
        """What the task waits for: routing-only, outcome-only, start-only, or both halves
        there and waiting for the pool start that gives the duration."""
        if self.routing is not None and self.outcome is not None:
            return BOTH
        if self.routing is not None:
            return ROUTING
        return OUTCOME if self.outcome is not None else START


class Correlator:
    """Pending halves by task_id, with counts kept up to date for ``stats()``."""

    def __init__(self, ttl: float, *, remember: int = 100_000) -> None:
        self.ttl = ttl
        self._pending: dict[UUID, Pending] = {}
        self._done: OrderedDict[UUID, datetime] = OrderedDict()  # recently built
        self._late: dict[UUID, Half] = {}  # pool starts that came after their record
        self._remember = remember
        self.counts: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, half: Half) -> ExecutionRecord | DeadLetter | None:
        """Take one half; return the record when the task is complete (or a dead letter
        when its halves, each valid, cannot make a record together)."""
        return self.take(half)[0]

    def take(self, half: Half) -> tuple[ExecutionRecord | DeadLetter | None, list[Half]]:
        """:meth:`add`, and the halves done with: those the result was made of, or those
        dropped (a late pool start kept aside, a half replaced by a newer one of its kind)."""
        task_id = half.task_id
        entry = self._pending.get(task_id)
        if entry is None and half.event_type == POOL_EXECUTION_START and task_id in self._done:
            self._late[task_id] = half  # not an orphan: kept only in case the task reruns
            return None, [half]
        done: list[Half] = []
        if entry is None:
            entry = self._pending[task_id] = Pending(start=self._late.pop(task_id, None))
        else:
            self.counts[entry.state] -= 1
        if half.event_type == ROUTING_DECISION:
            replaced, entry.routing = entry.routing, half
        elif half.event_type == POOL_EXECUTION_START:
            replaced, entry.start = entry.start, half
        else:
            replaced, entry.outcome = entry.outcome, half
        if replaced is not None:
            done.append(replaced)
        result = self._settle(task_id, entry)
        if result is not None:
            done += entry.halves()
        return result, done

    def _settle(self, task_id: UUID, entry: Pending) -> ExecutionRecord | DeadLetter | None:
        if entry.routing is None or entry.outcome is None:
            self.counts[entry.state] += 1
            return None
        try:
            record = build_record(entry.routing, entry.outcome, entry.start)
        except ValidationError as exc:
            del self._pending[task_id]
            reason = f"routing and outcome do not make a valid record: {exc.errors()[0]['msg']}"
            events = [h.as_event() for h in entry.halves()]
            return DeadLetter(task_id, reason, events, entry.first_seen)
        if record is None:
            self.counts[entry.state] += 1
            return None
        del self._pending[task_id]
        self._done[task_id] = max(h.received_at for h in entry.halves())
        self._done.move_to_end(task_id)
        while len(self._done) > self._remember:
            self._done.popitem(last=False)
        return record

    def expire(self, now: datetime) -> list[DeadLetter]:
        """Give up on the tasks first seen ``ttl`` seconds ago or more."""
        return [letter for letter, _ in self.expire_halves(now)]

    def expire_halves(self, now: datetime) -> list[tuple[DeadLetter, list[Half]]]:
        """:meth:`expire`, each letter with the halves it was made of."""
        limit = now - timedelta(seconds=self.ttl)
        expired = [(t, e) for t, e in self._pending.items() if e.first_seen <= limit]
        letters: list[tuple[DeadLetter, list[Half]]] = []
        for task_id, entry in expired:
            del self._pending[task_id]
            self.counts[entry.state] -= 1
            halves = entry.halves()
            events = [h.as_event() for h in halves]
            letter = DeadLetter(task_id, self._reason(entry), events, entry.first_seen)
            letters.append((letter, halves))
        while self._done and next(iter(self._done.values())) <= limit:
            self._done.popitem(last=False)
        for task_id in [t for t, h in self._late.items() if h.received_at <= limit]:
            del self._late[task_id]
        return letters

    def _reason(self, entry: Pending) -> str:
        after = f"after {self.ttl:g} s"
        return {
            ROUTING: f"routing decision without outcome {after}",
            OUTCOME: f"outcome without routing decision {after}",
            START: f"pool start without routing decision or outcome {after}",
            BOTH: f"outcome without duration and no pool start {after}",
        }[entry.state]

    def pending(self) -> dict[UUID, list[Half]]:
        """The halves waiting, by task, each task's in arrival order."""
        return {
            t: sorted(e.halves(), key=lambda h: h.received_at) for t, e in self._pending.items()
        }

    def renumber(self, task_id: UUID, seqs: dict[int, int]) -> None:
        """The task's halves were written to the journal again: their new seqs."""
        entry = self._pending.get(task_id)
        if entry is None:
            return
        for name in ("routing", "start", "outcome"):
            half = getattr(entry, name)
            if half is not None and half.seq in seqs:
                setattr(entry, name, dataclasses.replace(half, seq=seqs[half.seq]))

    def take_all(self) -> list[Half]:
        """Every pending half, in arrival order, and forget them (for the spool); late
        pool starts are not needed any more."""
        halves = [h for e in self._pending.values() for h in e.halves()]
        self._pending.clear()
        self._late.clear()
        self.counts.clear()
        return sorted(halves, key=lambda h: h.received_at)
