"""Every span of an export request read into :class:`SpanFacts`, or refused with a reason.

A span is refused alone (counted in the response's ``partial_success``): a bad id, an
attribute of the wrong type, an agent span whose execution would not validate. The rest of
the request is kept. Every span is kept, not only the GenAI ones: a plain span between an
agent span and a chat span (an HTTP call, a framework's step) links them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ._attributes import Attributes, BadSpan
from ._facts import SpanFacts
from ._mapping import checked_events, execution_fields, is_agent

__all__ = ["Read", "read_request"]

Read = tuple[list[SpanFacts], list[str]]
"""The spans taken, and a reason for each span refused."""


def _hex(value: bytes, size: int, name: str) -> str:
    if len(value) != size or not any(value):
        raise BadSpan(f"{name} must be {size} bytes, not all zero (got {len(value)} bytes)")
    return value.hex()


def read_span(span: Any, resource: Attributes) -> SpanFacts:
    """The facts of one span; BadSpan when it cannot be taken."""
    trace_id = _hex(span.trace_id, 16, "trace_id")
    span_id = _hex(span.span_id, 8, "span_id")
    parent = span.parent_span_id
    parent_id = _hex(parent, 8, "parent_span_id") if parent else ""
    attributes = Attributes(span.attributes)
    facts = SpanFacts(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        start=span.start_time_unix_nano,
        input_tokens=attributes.count("gen_ai.usage.input_tokens"),
        output_tokens=attributes.count("gen_ai.usage.output_tokens"),
        cost=attributes.number("orb.actual_cost"),
        model=attributes.text("gen_ai.response.model") or attributes.text("gen_ai.request.model"),
    )
    if not is_agent(attributes):
        return facts
    fields = execution_fields(span, attributes, resource, trace_id, span_id)
    facts = replace(facts, execution=fields)
    checked_events(facts, [])
    return facts


def read_request(request: Any) -> Read:
    """The spans of an ``ExportTraceServiceRequest``, in the request's order."""
    taken: list[SpanFacts] = []
    refused: list[str] = []
    for resource_spans in request.resource_spans:
        resource = Attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                try:
                    taken.append(read_span(span, resource))
                except BadSpan as exc:
                    who = span.span_id.hex() or "without a span_id"
                    refused.append(f"span {who} ({span.name[:60]!r}): {exc}")
    return taken, refused
