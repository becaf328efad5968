"""An agent-invocation span (and its descendants) into an ``ExecutionRecord``, and that
record into the two telemetry events ``TelemetryCapture`` stores it from.

The mapping table, with the defaults for what a span leaves out, is on docs/otlp.md. The
record goes through the capture as a routing decision plus an outcome with the same
``task_id`` (and its duration), so it takes the capture's journal, batches, spool and
upsert by ``task_id``: an execution sent twice is stored once, the later version winning.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..models import INT4_MAX, MAX_MEASURE, ErrorType, ExecutionRecord

# The capture's own parsing, to check before accepting a span that the events will pass
# it: an exporter told 200 must never see its span rejected later.
from ..telemetry._events import BadEvent, build_record, parse_half
from ..telemetry.bus import EXECUTION_OUTCOME, ROUTING_DECISION
from ._attributes import Attributes, BadSpan
from ._facts import SpanFacts

__all__ = [
    "AGENT_OPERATION",
    "TASK_NAMESPACE",
    "checked_events",
    "execution_fields",
    "is_agent",
    "record_of",
]

AGENT_OPERATION = "invoke_agent"
TASK_NAMESPACE = uuid.UUID("6f0c3b1e-5a41-5d1c-9b5e-0a7e3c2f4d61")
"""uuid5 namespace of the task ids derived from a span's trace and span ids."""
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
EVALUATION_EVENT = "gen_ai.evaluation.result"


def is_agent(attributes: Attributes) -> bool:
    """An execution: an ``invoke_agent`` span, or any span naming its ``orb.task_id``."""
    operation = attributes.text("gen_ai.operation.name")
    return operation == AGENT_OPERATION or "orb.task_id" in attributes


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _task_id(attributes: Attributes, trace_id: str, span_id: str) -> uuid.UUID:
    given = attributes.text("orb.task_id")
    if not given:
        return uuid.uuid5(TASK_NAMESPACE, f"{trace_id}/{span_id}")
    try:
        return uuid.UUID(given)
    except ValueError:
        raise BadSpan(f"orb.task_id {given[:80]!r} is not a UUID") from None


def _outcome(span: Any, attributes: Attributes) -> dict[str, Any]:
    """success, error_type and error_message from the status, error.type and exceptions."""
    error = attributes.text("error.type")
    failed = span.status.code == STATUS_ERROR or bool(error)
    if not failed:
        return {"success": True, "error_type": None, "error_message": None}
    message = span.status.message or _exception_message(span) or error
    kind = ErrorType.from_text(error or message) or ErrorType.UNKNOWN
    return {"success": False, "error_type": kind.value, "error_message": message or None}


def _exception_message(span: Any) -> str | None:
    for event in span.events:
        if event.name == "exception":
            return Attributes(event.attributes).text("exception.message")
    return None


def _quality(span: Any, attributes: Attributes) -> tuple[int | None, dict[str, Any]]:
    """orb.quality_score, else a gen_ai.evaluation.score.value in [0, 1] (x 100), from the
    span or its gen_ai.evaluation.result event; other scales stay in metadata only."""
    sources = [attributes]
    sources += [Attributes(e.attributes) for e in span.events if e.name == EVALUATION_EVENT]
    score = name = None
    for source in sources:
        score = source.number("gen_ai.evaluation.score.value")
        if score is not None:
            name = source.text("gen_ai.evaluation.name")
            break
    evaluation = _present(evaluation_score=score, evaluation_name=name)
    quality = attributes.score("orb.quality_score")
    if quality is None and score is not None and score <= 1.0:
        quality = round(score * 100)
    return quality, evaluation


def execution_fields(
    span: Any, attributes: Attributes, resource: Attributes, trace_id: str, span_id: str
) -> dict[str, Any]:
    """The record's fields (JSON values) from an agent span, tokens and cost aside.
    ``model_tier`` stays None when no model is named: the children's model fills it."""
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not start:
        raise BadSpan("start_time_unix_nano is missing")
    if end < start:
        raise BadSpan("end_time_unix_nano is before start_time_unix_nano")
    request_model = attributes.text("gen_ai.request.model")
    response_model = attributes.text("gen_ai.response.model")
    model = response_model or request_model
    agent_name = attributes.text("gen_ai.agent.name")
    service = resource.text("service.name")
    quality, evaluation = _quality(span, attributes)
    metadata = _present(
        source="otlp",
        trace_id=trace_id,
        span_id=span_id,
        model=model,
        request_model=request_model,
        response_model=response_model,
        provider=attributes.text("gen_ai.provider.name") or attributes.text("gen_ai.system"),
        agent_id=attributes.text("gen_ai.agent.id"),
        agent_name=agent_name,
        conversation_id=attributes.text("gen_ai.conversation.id"),
        service_name=service,
        **evaluation,
    )
    confidence = attributes.number("orb.routing_confidence")
    complexity = attributes.score("orb.complexity_score")
    estimate = attributes.number("orb.cost_estimate")
    description = attributes.text("orb.task_description")
    description = description or attributes.text("gen_ai.agent.description") or span.name
    return {
        "task_id": str(_task_id(attributes, trace_id, span_id)),
        "timestamp": datetime.fromtimestamp(start / 1e9, UTC).isoformat(),
        "end": datetime.fromtimestamp(end / 1e9, UTC).isoformat(),
        "task_type": attributes.text("orb.task_type") or "unknown",
        "task_description": description or "unknown",
        "repo": attributes.text("orb.repo") or "unknown",
        "model_tier": attributes.text("orb.model_tier") or model,
        "pool_type": attributes.text("orb.pool_type") or agent_name or service or "unknown",
        "routing_confidence": 0.5 if confidence is None else confidence,
        "complexity_score": 50 if complexity is None else complexity,
        "cost_estimate": 0.0 if estimate is None else estimate,
        "duration_seconds": (end - start) / 1e9,
        "quality_score": quality,
        "solution_summary": attributes.text("orb.solution_summary"),
        "metadata": metadata,
        **_outcome(span, attributes),
    }


def record_of(agent: SpanFacts, descendants: Sequence[SpanFacts]) -> ExecutionRecord:
    """The execution: the agent span's fields, its and its descendants' tokens summed, its
    own orb.actual_cost or else theirs summed."""
    assert agent.execution is not None
    fields = {k: v for k, v in agent.execution.items() if k != "end"}
    spans = [agent, *descendants]
    input_tokens = sum(s.input_tokens for s in spans)
    output_tokens = sum(s.output_tokens for s in spans)
    cost = agent.cost
    if cost is None:
        cost = sum(d.cost for d in descendants if d.cost is not None)
    if not fields["model_tier"]:
        models = [d.model for d in sorted(descendants, key=lambda d: d.start) if d.model]
        fields["model_tier"] = models[0] if models else "unknown"
    fields["estimated_tokens"] = min(input_tokens + output_tokens, INT4_MAX)
    fields["actual_cost"] = min(cost, MAX_MEASURE)
    fields["metadata"] = {
        **fields["metadata"],
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "child_spans": len(descendants),
    }
    try:
        return ExecutionRecord.model_validate(fields)
    except ValidationError as exc:
        raise BadSpan(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors()
    )


def events_of(record: ExecutionRecord, end: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The routing decision and the outcome the capture rebuilds ``record`` from."""
    routing = {
        "task_id": str(record.task_id),
        "timestamp": record.timestamp.isoformat(),
        "routing": {
            "model_tier": record.model_tier,
            "routing_confidence": record.routing_confidence,
            "complexity_score": record.complexity_score,
            "cost_estimate": record.cost_estimate,
            "pool_type": record.pool_type,
        },
        "task_data": {
            "task_description": record.task_description,
            "task_type": record.task_type,
            "repo": record.repo,
            "estimated_tokens": record.estimated_tokens,
            "metadata": record.metadata,
        },
    }
    outcome = {
        "task_id": str(record.task_id),
        "timestamp": end,
        "success": record.success,
        "duration_seconds": record.duration_seconds,
        "actual_cost": record.actual_cost,
        **_present(
            quality_score=record.quality_score,
            error_type=record.error_type.value if record.error_type else None,
            error_message=record.error_message,
            solution_summary=record.solution_summary,
        ),
    }
    return routing, outcome


def checked_events(agent: SpanFacts, descendants: Sequence[SpanFacts]) -> list[dict[str, Any]]:
    """The execution's two events, parsed as the capture will parse them (BadSpan if not)."""
    assert agent.execution is not None
    record = record_of(agent, descendants)
    routing, outcome = events_of(record, agent.execution["end"])
    now = datetime.now(UTC)
    try:
        routed = parse_half(ROUTING_DECISION, routing, now)
        built = build_record(routed, parse_half(EXECUTION_OUTCOME, outcome, now), None)
    except (BadEvent, ValidationError) as exc:
        raise BadSpan(str(exc)) from None
    if built is None:  # pragma: no cover - the outcome always carries its duration
        raise BadSpan("the execution has no duration")
    return [routing, outcome]
