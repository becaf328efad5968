"""Turning the orchestrator's event dicts into validated halves of an ExecutionRecord.

Every event is checked half by half (off the caller's path, see :mod:`._intake`), so that a
bad value is rejected with its own event (and a reason naming the field) instead of
failing the record built from it later. The keys each event carries are documented in
:mod:`orb_learning.telemetry`. Unknown keys are ignored (pool results carry ``output``),
but kept in the raw event that dead letters and the spool hold.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pydantic import ValidationError

from ..models import ErrorType, ExecutionRecord, FeedbackRecord
from ._jsonable import jsonable
from .bus import (
    EXECUTION_OUTCOME,
    FEEDBACK,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
)

__all__ = ["BadEvent", "Half", "build_record", "parse_feedback", "parse_half", "parse_time"]


class BadEvent(ValueError):
    """An event that cannot become part of a record; the message is the reason."""


@dataclass(frozen=True)
class Half:
    """One validated event about a task: its normalized fields and its raw form."""

    event_type: str
    task_id: uuid.UUID
    received_at: datetime
    data: dict[str, Any]  # the event as captured (its journaled form, see intake)
    fields: dict[str, Any]
    seq: int | None = None  # its line in the journal (None: not journaled)

    def as_event(self) -> dict[str, Any]:
        """The raw event as dead letters and the spool keep it (made JSON-safe here, only
        for the few events that need it, not for every event captured)."""
        return {
            "event_type": self.event_type,
            "received_at": self.received_at.isoformat(),
            "data": jsonable(self.data),
        }


# Values that stand in for what a half does not carry, when it is validated alone.
_NEUTRAL: dict[str, Any] = {
    "task_type": "-",
    "task_description": "-",
    "repo": "-",
    "model_tier": "-",
    "pool_type": "-",
    "routing_confidence": 0.5,
    "cost_estimate": 0.0,
    "success": True,
    "duration_seconds": 0.0,
    "actual_cost": 0.0,
}


def parse_time(value: Any, default: datetime, name: str = "timestamp") -> datetime:
    """A datetime (naive = UTC), an ISO 8601 string or epoch seconds; None -> default."""
    if value is None:
        return default
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return parse_time(datetime.fromisoformat(value), default, name)
        except ValueError:
            raise BadEvent(f"{name}: {value!r} is not an ISO 8601 date-time") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise BadEvent(f"{name}: {value!r} is not a valid epoch time") from None
    raise BadEvent(f"{name}: expected a datetime, ISO string or epoch seconds, not {_kind(value)}")


def _kind(value: Any) -> str:
    return type(value).__name__


def _get(source: Any, *names: str) -> Any:
    """The first of ``names`` present (and not None) in a mapping or as an attribute."""
    for name in names:
        value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
        if value is not None:
            return value
    return None


def _number(value: Any, name: str, *, integer: bool = False) -> Any:
    """Refuse booleans where a number is expected (pydantic would take True as 1);
    round a float given for an integer column (routers often score in floats)."""
    if isinstance(value, bool):
        raise BadEvent(f"{name}: expected a number, not a bool")
    if integer and isinstance(value, float) and math.isfinite(value):
        return round(value)
    return value


def _label(value: Any) -> Any:
    """An enum (ModelTier.MEDIUM) by its value ("medium"); anything else as given."""
    return value.value if isinstance(value, Enum) else value


def _task_id(data: Mapping[str, Any]) -> uuid.UUID:
    value = data.get("task_id")
    if value is None:
        raise BadEvent("task_id is missing")
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise BadEvent(f"task_id {value[:80]!r} is not a UUID") from None
    raise BadEvent(f"task_id must be a UUID or its string, not {_kind(value)}")


def _checked(fields: dict[str, Any], what: str) -> dict[str, Any]:
    """Validate one half's fields through ExecutionRecord, the rest stood in for."""
    try:
        record = ExecutionRecord.model_validate({**_NEUTRAL, **fields})
    except ValidationError as exc:
        raise BadEvent(f"{what}: {_describe(exc)}") from None
    return {name: getattr(record, name) for name in fields}


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors()
    )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _routing_fields(data: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    routing = data.get("routing")
    if routing is None:
        raise BadEvent("routing is missing")
    task = data.get("task_data") or {}
    if not isinstance(task, Mapping):
        raise BadEvent(f"task_data must be a mapping, not {_kind(task)}")
    description = _get(task, "description", "prompt", "task_description")
    if description is None:
        raise BadEvent("task_data.description (or prompt/task_description) is missing")
    tier = _label(_get(routing, "tier", "model_tier"))
    if tier is None:
        raise BadEvent("routing.tier (or model_tier) is missing")
    confidence = _get(routing, "confidence", "routing_confidence")
    if confidence is None:
        raise BadEvent("routing.confidence (or routing_confidence) is missing")
    files = task.get("files")
    if files is not None and not isinstance(files, list | tuple):
        raise BadEvent(f"task_data.files must be a list, not {_kind(files)}")
    file_count = len(files) if files is not None else task.get("file_count", 0)
    tokens = _number(task.get("estimated_tokens", 0), "task_data.estimated_tokens", integer=True)
    cost = _get(routing, "cost_estimate", "estimated_cost")
    per_1k = _get(routing, "cost_per_1k_tokens")
    if cost is None and per_1k is not None and isinstance(tokens, int):
        cost = tokens / 1000 * _number(per_1k, "routing.cost_per_1k_tokens")
    metadata = task.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise BadEvent(f"task_data.metadata must be a mapping, not {_kind(metadata)}")
    extra = _present(model=_get(routing, "model"), routing_reason=_get(routing, "routing_reason"))
    complexity = _get(routing, "complexity_score")
    complexity = task.get("complexity_score", 50) if complexity is None else complexity
    fields = {
        "timestamp": parse_time(data.get("timestamp"), received_at),
        "task_type": _or(_label(_get(task, "type", "task_type")), "unknown"),
        "task_description": description,
        "repo": _or(_get(task, "repo", "repo_path"), "unknown"),
        "file_count": _number(file_count, "task_data.file_count"),
        "estimated_tokens": tokens,
        "model_tier": tier,
        "routing_confidence": _number(confidence, "routing.confidence"),
        "complexity_score": _number(complexity, "routing.complexity_score", integer=True),
        "cost_estimate": _number(0.0 if cost is None else cost, "routing.cost_estimate"),
        "swarm_topology": _label(_or(_get(routing, "swarm_topology"), task.get("swarm_topology"))),
        "metadata": jsonable({**metadata, **extra}),
    }
    pool = _label(_get(routing, "pool", "pool_type"))
    recommended = _or(data.get("recommendation_id"), _get(routing, "recommendation_id"))
    present = _present(pool_type=pool, recommendation_id=recommended)
    checked = _checked({**fields, **present}, "routing")
    checked.setdefault("pool_type", None)
    return checked


def _outcome_fields(data: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    success = data.get("success")
    if success is None:
        status = data.get("status")
        if status is None:
            raise BadEvent("success (or status) is missing")
        if not isinstance(status, str):
            raise BadEvent(f"status must be a string, not {_kind(status)}")
        success = status.strip().lower() == "completed"
    message = _get(data, "error_message", "error")
    if isinstance(message, BaseException):
        message = str(message) or type(message).__name__
    error_type = data.get("error_type")
    if isinstance(error_type, str) and not isinstance(error_type, ErrorType):
        error_type = ErrorType.from_text(error_type)
    if error_type is None and success is False and isinstance(message, str):
        error_type = ErrorType.from_text(message)
    duration = _get(data, "duration_seconds", "duration")
    fields = _present(
        success=success,
        duration_seconds=None if duration is None else _number(duration, "duration_seconds"),
        quality_score=_number(data.get("quality_score"), "quality_score", integer=True),
        actual_cost=_number(_or(_get(data, "actual_cost", "cost"), 0.0), "actual_cost"),
        error_type=error_type,
        error_message=message,
        peak_memory_mb=_number(data.get("peak_memory_mb"), "peak_memory_mb"),
        cpu_time_seconds=_number(data.get("cpu_time_seconds"), "cpu_time_seconds"),
        solution_summary=data.get("solution_summary"),
        pool_type=_label(data.get("pool_type")),
    )
    ids = jsonable(_present(pool_id=data.get("pool_id"), worker_id=data.get("worker_id")))
    checked = _checked({**fields, "metadata": ids}, "outcome")
    checked["timestamp"] = parse_time(data.get("timestamp"), received_at)
    return checked


def _start_fields(data: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    fields = _present(pool_type=_label(data.get("pool_type")))
    ids = jsonable(_present(pool_id=data.get("pool_id")))
    checked = _checked({**fields, "metadata": ids}, "pool start")
    checked["timestamp"] = parse_time(data.get("timestamp"), received_at)
    return checked


def parse_half(event_type: str, data: Any, received_at: datetime, seq: int | None = None) -> Half:
    """Validate one routing decision, pool start, pool completion or outcome."""
    if not isinstance(data, Mapping):
        raise BadEvent(f"an event must be a mapping, not {_kind(data)}")
    task_id = _task_id(data)
    if event_type == ROUTING_DECISION:
        fields = _routing_fields(data, received_at)
    elif event_type == POOL_EXECUTION_START:
        fields = _start_fields(data, received_at)
    elif event_type in (EXECUTION_OUTCOME, POOL_EXECUTION_COMPLETE):
        fields = _outcome_fields(data, received_at)
    else:
        raise BadEvent(f"unknown event type {event_type!r}")
    raw = data if isinstance(data, dict) else dict(data)
    return Half(event_type, task_id, received_at, raw, fields, seq)


def parse_feedback(data: Any, received_at: datetime) -> tuple[FeedbackRecord, dict[str, Any]]:
    """Validate a feedback event; return the record and the raw event (id filled in)."""
    if not isinstance(data, Mapping):
        raise BadEvent(f"an event must be a mapping, not {_kind(data)}")
    values = {
        "feedback_id": data.get("feedback_id") or uuid.uuid4(),
        "task_id": _task_id(data),
        "timestamp": parse_time(data.get("timestamp"), received_at),
        "feedback_type": data.get("feedback_type") or "rating",
        "rating": _number(data.get("rating"), "rating"),
        "comment": data.get("comment"),
        "user_id": data.get("user_id"),
    }
    try:
        record = FeedbackRecord.model_validate(values)
    except ValidationError as exc:
        raise BadEvent(f"feedback: {_describe(exc)}") from None
    raw = {"event_type": FEEDBACK, "received_at": received_at.isoformat(), "data": jsonable(data)}
    raw["data"]["feedback_id"] = str(record.feedback_id)
    return record, raw


def build_record(routing: Half, outcome: Half, start: Half | None) -> ExecutionRecord | None:
    """The execution of a task whose routing and outcome are both known; None while its
    duration is unknown (no duration given and no pool start yet)."""
    r, o = routing.fields, outcome.fields
    s = start.fields if start is not None else {"metadata": {}}
    duration = o.get("duration_seconds")
    if duration is None:
        if start is None:
            return None
        duration = max(0.0, (o["timestamp"] - s["timestamp"]).total_seconds())
    pool_id = o["metadata"].get("pool_id", s["metadata"].get("pool_id"))
    pool_type = r["pool_type"] or o.get("pool_type") or s.get("pool_type") or pool_id
    values = {
        **{k: v for k, v in r.items() if k != "pool_type"},
        **{k: v for k, v in o.items() if k not in ("timestamp", "pool_type")},
        "task_id": routing.task_id,
        "timestamp": r["timestamp"],
        "duration_seconds": duration,
        "pool_type": str(pool_type) if pool_type not in (None, "") else "unknown",
        "metadata": {**r["metadata"], **s["metadata"], **o["metadata"]},
    }
    return ExecutionRecord.model_validate(values)
