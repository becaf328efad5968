"""The spans held per trace, so that an agent span meets its descendants in any order.

A BatchSpanProcessor exports a span when it ends, and children end before their parent:
an agent's chat and tool spans often arrive one or more requests before the agent span.
Every span of a trace is therefore held (as :class:`SpanFacts`, a few hundred bytes) for
``window`` seconds after the trace's last span arrived, at most ``max_spans`` in all (the
oldest traces go first past that). When a span arrives, the agent spans it changes are
returned: the agent span itself, or the nearest agent span above it. An agent's
descendants stop at nested agent spans, which are executions of their own, so no token is
counted twice. Each held span keeps its line in the span journal, settled when it goes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._facts import SpanFacts

__all__ = ["TraceBuffer"]

logger = logging.getLogger("orb_learning.otlp")
Agent = tuple[SpanFacts, list[SpanFacts]]
"""An agent span and its descendants (nested agents' subtrees left out)."""


@dataclass
class _Trace:
    spans: dict[str, SpanFacts] = field(default_factory=dict)
    seqs: dict[str, int | None] = field(default_factory=dict)  # span -> journal line
    last_seen: float = 0.0


class TraceBuffer:
    """Spans by trace, oldest trace first."""

    def __init__(self, window: float, max_spans: int) -> None:
        self.window = window
        self.max_spans = max_spans
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self.spans = 0

    def __len__(self) -> int:
        return len(self._traces)

    def merge(self, spans: Iterable[SpanFacts], received: float) -> list[int | None]:
        """Hold ``spans`` (a span sent again replaces its earlier copy); the journal lines
        of the copies replaced."""
        replaced: list[int | None] = []
        for facts in spans:
            trace = self._traces.get(facts.trace_id)
            if trace is None:
                trace = self._traces[facts.trace_id] = _Trace()
            self._traces.move_to_end(facts.trace_id)
            trace.last_seen = max(trace.last_seen, received)
            if facts.span_id in trace.spans:
                replaced.append(trace.seqs.get(facts.span_id))
            else:
                self.spans += 1
            trace.spans[facts.span_id] = facts
            trace.seqs[facts.span_id] = None
        return replaced

    def journaled(self, facts: SpanFacts, seq: int | None) -> None:
        trace = self._traces.get(facts.trace_id)
        if trace is not None and trace.spans.get(facts.span_id) is facts:
            trace.seqs[facts.span_id] = seq

    def affected(self, spans: Iterable[SpanFacts]) -> list[Agent]:
        """The agent spans whose executions ``spans`` change, each once, with their
        descendants as held now."""
        keys: dict[tuple[str, str], None] = {}
        for facts in spans:
            agent = self._agent_above(facts)
            if agent is not None:
                keys[(agent.trace_id, agent.span_id)] = None
        return [self._with_descendants(t, s) for t, s in keys]

    def _agent_above(self, facts: SpanFacts) -> SpanFacts | None:
        """The span itself if it is an agent span, else its nearest agent ancestor."""
        trace = self._traces.get(facts.trace_id)
        seen: set[str] = set()
        current: SpanFacts | None = facts
        while current is not None and trace is not None and current.span_id not in seen:
            if current.is_agent:
                return current
            seen.add(current.span_id)
            current = trace.spans.get(current.parent_id)
        return None

    def _with_descendants(self, trace_id: str, span_id: str) -> Agent:
        trace = self._traces[trace_id]
        children: dict[str, list[SpanFacts]] = {}
        for facts in trace.spans.values():
            children.setdefault(facts.parent_id, []).append(facts)
        agent = trace.spans[span_id]
        found: list[SpanFacts] = []
        seen = {span_id}
        stack = list(children.get(span_id, ()))
        while stack:
            facts = stack.pop()
            if facts.span_id in seen or facts.is_agent:
                continue
            seen.add(facts.span_id)
            found.append(facts)
            stack += children.get(facts.span_id, ())
        return agent, found

    def expire(self, now: float) -> list[int | None]:
        """Let go of the traces idle for ``window`` seconds, then of the oldest while more
        than ``max_spans`` spans are held; their journal lines."""
        released: list[int | None] = []
        limit = now - self.window
        while self._traces:
            trace_id, trace = next(iter(self._traces.items()))
            over = self.spans > self.max_spans
            if trace.last_seen > limit and not over:
                break
            if over and trace.last_seen > limit:
                logger.warning(
                    "more than %d spans held: trace %s let go early (%d spans)",
                    self.max_spans,
                    trace_id,
                    len(trace.spans),
                )
            del self._traces[trace_id]
            self.spans -= len(trace.spans)
            released += trace.seqs.values()
        return released
