"""What the receiver keeps of a span: its place in the trace, its tokens and cost, and for
an agent-invocation span the execution it describes. One JSON line of the span journal."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SpanFacts"]


@dataclass(frozen=True)
class SpanFacts:
    """One span, reduced to what an execution needs (ids in lowercase hex)."""

    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    start: int  # start_time_unix_nano: orders the children (the first one's model)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None  # orb.actual_cost, USD
    model: str | None = None  # gen_ai.response.model, else gen_ai.request.model
    execution: dict[str, Any] | None = None  # an agent span's record fields, totals aside

    @property
    def is_agent(self) -> bool:
        return self.execution is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpanFacts:
        return cls(**data)
