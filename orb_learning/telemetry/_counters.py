"""The capture's counters: what waits, what is queued, spooled, journaled, stored or lost.

Each first checks what is still in the inbox (see :mod:`._intake`): a counter read right
after a capture call counts that event, as if it had been checked during the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._correlate import BOTH, OUTCOME, ROUTING, START, Correlator
from ._intake import Intake
from ._journal import Journal
from ._pipeline import Buffer, Counters
from ._writer import Writer

__all__ = ["CaptureCounters"]


class CaptureCounters:
    """The counters of :class:`~orb_learning.telemetry._capture.TelemetryCapture`."""

    _intake: Intake
    _correlator: Correlator
    _buffer: Buffer
    _writer: Writer
    _counters: Counters
    _journal: Journal
    _ready: asyncio.Event

    @property
    def routing_decisions_waiting(self) -> int:
        """Routing decisions waiting for their outcome."""
        self._intake.check()
        return self._correlator.counts[ROUTING]

    @property
    def outcomes_waiting(self) -> int:
        """Outcomes (or pool completions) waiting for their routing decision."""
        self._intake.check()
        return self._correlator.counts[OUTCOME]

    @property
    def records_queued(self) -> int:
        """Items in memory on their way to the store (the batches being embedded and
        written included)."""
        self._intake.check()
        return len(self._buffer.queue) + len(self._writer.in_flight)

    @property
    def records_spooled(self) -> int:
        """Items beyond the memory bound: in the spool, or about to be appended to it."""
        self._intake.check()
        return self._buffer.spooled

    @property
    def events_rejected(self) -> int:
        """Events refused: by the call's shape checks, or by the full validation right
        behind the call."""
        self._intake.check()
        return self._counters.rejected

    @property
    def dead_letters(self) -> int:
        """Dead letters made since start (orphans, rejected records, unknown feedback)."""
        self._intake.check()
        return self._counters.dead_letters

    @property
    def records_written(self) -> int:
        """Executions stored since start."""
        return self._counters.written

    def get_routing_decisions_count(self) -> int:
        """The first version's name for :attr:`routing_decisions_waiting`."""
        return self.routing_decisions_waiting

    def get_execution_outcomes_count(self) -> int:
        """The first version's name for :attr:`outcomes_waiting`."""
        return self.outcomes_waiting

    def stats(self) -> dict[str, Any]:
        """Every counter at once (for logs, health checks and benchmarks)."""
        self._intake.check()
        counts = self._correlator.counts
        return {
            "routing_decisions_waiting": counts[ROUTING],
            "outcomes_waiting": counts[OUTCOME],
            "pool_starts_waiting": counts[START],
            "waiting_for_pool_start": counts[BOTH],
            "records_queued": self.records_queued,
            "records_spooled": self.records_spooled,
            "events_rejected": self._counters.rejected,
            "dead_letters": self._counters.dead_letters,
            "dead_letters_written": self._counters.dead_letters_written,
            "records_written": self._counters.written,
            "feedback_written": self._counters.feedback_written,
            "feedback_waiting": len(self._writer.retries),
            "database_ready": self._ready.is_set(),
            "database_error": self._counters.database_error,
            "events_not_journaled": self._journal.not_journaled,
            "journal_error": self._journal.error,
            "journal_events": self._journal.unsettled,
            "journal_segments": self._journal.segments,
            "journal_bytes": self._journal.size,
            "spool_error": self._buffer.spool_error,
            "records_left_to_journal": self._counters.left_to_journal,
            "records_lost": self._counters.lost,
            "dead_letters_refused": self._counters.dead_letters_refused,
        }
