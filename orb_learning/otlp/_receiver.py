"""``OtlpReceiver``: export requests in, executions out through ``TelemetryCapture``.

A request is read whole first (every span checked, see :mod:`._spans`); then the spans join
their traces (:mod:`._traces`), the agent executions they change are captured (the
capture's journal has them before the call returns), and the spans are appended to the
span journal: ``<spool stem>.otlp.journal.<seq>.jsonl`` beside the capture's own, in the
capture's directory and under its lock, written and settled the same way. Only then is
the request answered, so a crash after a 200 loses nothing: the capture replays its
journal, and the receiver reloads the spans it still held (children waiting for their agent
span survive a restart). A span's line is settled when its trace is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..telemetry import ShutdownReport, TelemetryCapture
from ..telemetry._journal import Durability, Journal
from ._app import Accepted, build_app
from ._attributes import BadSpan
from ._facts import SpanFacts
from ._mapping import checked_events
from ._spans import read_request
from ._traces import TraceBuffer

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..database import LearningDatabase

__all__ = ["DEFAULT_SPOOL_PATH", "TOKEN_VARIABLE", "OtlpReceiver"]

logger = logging.getLogger("orb_learning.otlp")
DEFAULT_SPOOL_PATH = Path("data/otlp-spool/spool.jsonl")
TOKEN_VARIABLE = "ORB_LEARNING_OTLP_TOKEN"
_SPAN = "otlp_span"  # the span journal's event type


class OtlpReceiver:
    """The OTLP/HTTP trace receiver; :attr:`app` is its ASGI app.

    ``database`` defaults to ``LearningDatabase()`` (closed by :meth:`close`).
    ``token``: the bearer token requests must carry (default ``$ORB_LEARNING_OTLP_TOKEN``;
    none: no check). ``max_body_bytes``: default the database's
    ``settings.otlp_max_body_bytes``. ``trace_window``: seconds a trace's spans are held
    after its last span arrived, for the spans still to come; ``max_spans``: spans held in
    all. ``spool_path``, ``batch_timeout``, ``durability``, ``shutdown_timeout``: the
    capture's (see :class:`~orb_learning.TelemetryCapture`).
    """

    def __init__(
        self,
        database: LearningDatabase | None = None,
        *,
        spool_path: str | os.PathLike[str] = DEFAULT_SPOOL_PATH,
        token: str | None = None,
        max_body_bytes: int | None = None,
        trace_window: float = 3600.0,
        max_spans: int = 100_000,
        batch_timeout: float = 1.0,
        durability: Durability = "write",
        shutdown_timeout: float = 10.0,
    ) -> None:
        if trace_window <= 0 or max_spans < 1:
            raise ValueError("trace_window must be positive and max_spans at least 1")
        self.capture = TelemetryCapture(
            None,
            database,
            spool_path=spool_path,
            batch_timeout=batch_timeout,
            durability=durability,
            shutdown_timeout=shutdown_timeout,
        )
        self.token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
        limit = max_body_bytes or self.capture.database.settings.otlp_max_body_bytes
        if limit < 1:
            raise ValueError("max_body_bytes must be at least 1")
        self.max_body_bytes = limit
        self._traces = TraceBuffer(trace_window, max_spans)
        self._durability = durability
        self._journal: Journal | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._state = "new"
        self.app: Starlette = build_app(self)

    async def __aenter__(self) -> OtlpReceiver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def traces_held(self) -> int:
        return len(self._traces)

    @property
    def spans_held(self) -> int:
        return self._traces.spans

    async def start(self) -> None:
        """Start the capture (which takes the spool's lock), then reload the spans a
        previous run still held."""
        if self._state != "new":
            return
        await self.capture.initialize()
        spool = Path(self.capture.spool_path)
        journal = Journal(
            spool.parent, spool.name.removesuffix(".jsonl") + ".otlp", durability=self._durability
        )
        for seq, _, data, received in await asyncio.to_thread(journal.load):
            try:
                facts = SpanFacts.from_json(data)
            except TypeError:
                logger.error("skipped an unreadable span of the span journal: %r", data)
                journal.settle((seq,))
                continue
            journal.settle(self._traces.merge([facts], received))
            self._traces.journaled(facts, seq)
        journal.settle(self._traces.expire(time.time()))
        journal.start()
        self._journal = journal
        if self._traces.spans:
            logger.info("reloaded %d spans of %d traces", self._traces.spans, len(self._traces))
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="orb-otlp")
        self._state = "running"

    async def accept(self, request: Any) -> Accepted:
        """Take an ``ExportTraceServiceRequest``: durable (journaled) when this returns,
        unless ``durable`` is False (then the exporter is to retry)."""
        journal = self._journal
        if self._state != "running" or journal is None:
            return Accepted(0, durable=False)
        taken, refused = read_request(request)
        now = time.time()
        replaced = self._traces.merge(taken, now)
        events: list[list[dict[str, Any]]] = []
        for agent, descendants in self._traces.affected(taken):
            try:
                events.append(checked_events(agent, descendants))
            except BadSpan as exc:
                refused.append(f"span {agent.span_id}: {exc}")
        durable = await self._capture(events)
        for facts in taken:
            seq = journal.append(_SPAN, facts.to_json(), now)
            durable = durable and seq is not None
            self._traces.journaled(facts, seq)
        journal.settle(replaced)
        journal.settle(self._traces.expire(now))
        journal.rotate_if_due()
        return Accepted(len(taken), refused, durable, len(events))

    async def _capture(self, executions: list[list[dict[str, Any]]]) -> bool:
        """Capture each execution's routing decision and outcome; whether all of them
        reached the capture's journal."""
        if not executions:
            return True
        before = self.capture.stats()["events_not_journaled"]
        for routing, outcome in executions:
            await self.capture.capture_routing_decision(routing)
            await self.capture.capture_execution_outcome(outcome)
        return bool(self.capture.stats()["events_not_journaled"] == before)

    async def _sweep(self) -> None:
        interval = min(max(self._traces.window / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            if self._journal is not None:
                self._journal.settle(self._traces.expire(time.time()))

    async def flush(self, timeout: float | None = None) -> bool:
        """Store what the capture holds now (True once it is stored)."""
        return await self.capture.flush(timeout)

    async def close(self, timeout: float | None = None) -> ShutdownReport:
        """Stop: the capture stores what it can (see ``TelemetryCapture.shutdown``); the
        spans still held stay in the span journal for the next start."""
        self._state = "closed"
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        report = await self.capture.shutdown(timeout)
        if self._journal is not None:
            await self._journal.close(5.0)
            self._journal = None
        return report
