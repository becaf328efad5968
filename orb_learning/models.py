"""Pydantic models of the learning store: executions, solutions, feedback, quality policies.

They keep the first version's names, defaults and formulas, and add the checks its DuckDB
store lacked and PostgreSQL needs: no NUL in text, finite floats, integers that fit an
``integer`` column, JSON-only metadata and timezone-aware timestamps. Only pydantic and the
standard library are imported, so the models load fast in producers that never embed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Any, Literal, Self
from uuid import UUID, uuid4

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import TzInfo

__all__ = [
    "EARLIEST_TIMESTAMP",
    "INT4_MAX",
    "LATEST_TIMESTAMP",
    "MAX_CLOCK_SKEW",
    "MAX_KEY_LENGTH",
    "MAX_MEASURE",
    "ErrorType",
    "ExecutionRecord",
    "FeedbackRecord",
    "JsonObject",
    "QualityPolicy",
    "RequiredText",
    "SolutionRecord",
    "Text",
    "UtcDatetime",
]

INT4_MAX = 2_147_483_647
"""Largest value of a PostgreSQL ``integer`` column."""

# --- what a stored row may hold: the table's CHECK constraints mirror these ------------------
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
"""No telemetry predates the Unix epoch; earlier values are clock or parsing bugs (and
year 1 became ``-infinity`` in asyncpg, which broke retention)."""
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
"""The table's fixed upper bound (a CHECK constraint cannot read the clock)."""
MAX_CLOCK_SKEW = timedelta(hours=1)
"""How far past the validating machine's clock a timestamp may be (producers' clocks
drift); the model refuses later ones."""
MAX_MEASURE = 1e9
"""Upper bound of every non-negative measure (durations and CPU time in seconds, about 31
years; costs in USD; memory in MB, a petabyte). The views sum and average these over any
window, and PostgreSQL's float8 aggregates keep sums of squares: two rows of 1e308 made
every later refresh fail with ``22003: value out of range: overflow``. At this bound the
sum of squares of a trillion rows is 1e30, far inside float8's range."""
MAX_KEY_LENGTH = 200
"""Characters of repo, task_type, model_tier and pool_type: the views' unique indexes hold
three of them in one btree entry, which PostgreSQL caps at 2,704 bytes (3 x 200 characters
of up to 4 UTF-8 bytes each fit; a longer key made a refresh fail after the insert took
it)."""

_NUL_MESSAGE = "contains a NUL character, which PostgreSQL text cannot store"


# --- shared validators -------------------------------------------------------------------


def _no_nul(value: str) -> str:
    """PostgreSQL rejects U+0000 in text and jsonb, and UTF-8 cannot encode a lone
    surrogate: refuse both before the insert does."""
    if "\x00" in value:
        raise ValueError(_NUL_MESSAGE)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"contains an unpaired surrogate at position {exc.start}, which is not valid UTF-8"
        ) from None
    return value


def _not_empty(value: str) -> str:
    """An empty repo, tier or type makes every grouping and per-repo filter meaningless."""
    if value == "":
        raise ValueError("must not be empty")
    return value


def _not_blank(value: str) -> str:
    """Whitespace-only text carries no information either (used where the spec asks)."""
    if not value.strip():
        raise ValueError("must not be empty or whitespace only")
    return value


def _utc_if_naive(value: datetime) -> datetime:
    """Naive means UTC here; an aware value keeps its own offset (the round trip needs it).

    pydantic's ``TzInfo`` (what it builds when parsing a string) is swapped for the
    standard-library equivalent, so a parsed ``...Z`` gives ``tzinfo is datetime.UTC``.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if isinstance(value.tzinfo, TzInfo):
        offset = value.utcoffset()
        return value.replace(tzinfo=UTC if not offset else timezone(offset))
    return value


def _json_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Metadata goes to a jsonb column: it must be plain JSON, finite, NUL-free, str-keyed."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(
            f"must be JSON-serialisable (no NaN/inf, no non-JSON objects): {exc}"
        ) from exc
    # json.dumps succeeded, so the structure is acyclic and made of JSON types only.
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _no_nul(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValueError(
                        f"keys must be strings (JSON would turn {key!r} into a string)"
                    )
                _no_nul(key)
                stack.append(child)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


def _storable_time(value: datetime) -> datetime:
    """Between 1970-01-01 and ``MAX_CLOCK_SKEW`` past now (UTC), in what PostgreSQL holds."""
    value = _utc_if_naive(value)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # an offset pushes it past year 1 or 9999
        utc = None
    latest = min(datetime.now(UTC) + MAX_CLOCK_SKEW, LATEST_TIMESTAMP)
    if utc is None or not EARLIEST_TIMESTAMP <= utc <= latest:
        raise ValueError(
            f"must be between {EARLIEST_TIMESTAMP:%Y-%m-%d} and {MAX_CLOCK_SKEW} past now "
            f"(UTC); got {value.isoformat()}"
        )
    return value


def _now_utc() -> datetime:
    return datetime.now(UTC)


Text = Annotated[str, AfterValidator(_no_nul)]
"""Any text PostgreSQL can store."""

RequiredText = Annotated[str, AfterValidator(_no_nul), AfterValidator(_not_empty)]
"""Non-empty text, kept exactly as given (whitespace and unicode included)."""

UtcDatetime = Annotated[datetime, AfterValidator(_utc_if_naive)]
"""A timezone-aware datetime; naive input is taken as UTC."""

StoredDatetime = Annotated[datetime, AfterValidator(_storable_time)]
"""A :data:`UtcDatetime` from 1970 to ``MAX_CLOCK_SKEW`` past now: what a row may hold."""

Key = Annotated[RequiredText, Field(max_length=MAX_KEY_LENGTH)]
"""A grouping key of the views (repo, task type, tier, pool): non-empty, at most
``MAX_KEY_LENGTH`` characters."""

JsonObject = Annotated[dict[str, Any], AfterValidator(_json_metadata)]
"""A dict that survives ``json.dumps(..., allow_nan=False)`` and a jsonb column."""

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Measure = Annotated[float, Field(ge=0.0, le=MAX_MEASURE)]
Int4Count = Annotated[int, Field(ge=0, le=INT4_MAX)]
Percent = Annotated[int, Field(ge=0, le=100)]
Rating = Annotated[int, Field(ge=1, le=5)]


class _StoreModel(BaseModel):
    """Shared config: re-validate on assignment, refuse unknown fields, refuse NaN/inf."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid", allow_inf_nan=False)


# --- ErrorType ---------------------------------------------------------------------------


class ErrorType(str, Enum):  # noqa: UP042  (the first version's type; StrEnum changes str())
    """Failure categories of an execution (the first version's five values)."""

    TIMEOUT = "timeout"
    QUALITY_GATE = "quality_gate"
    CRASH = "crash"
    VALIDATION = "validation"
    UNKNOWN = "unknown"

    @classmethod
    def from_text(cls, text: str | None) -> ErrorType | None:
        """Classify free error text, as producers did; ``None`` when there is no text.

        An exact value (any case) wins, then keywords in order: timeout, validation,
        quality, crash. Anything else is UNKNOWN rather than an error, since producers
        must never fail while reporting a failure.
        """
        if not text:
            return None
        lowered = text.lower()
        try:
            return cls(lowered.strip())
        except ValueError:
            pass
        if "timeout" in lowered or "timed out" in lowered:
            return cls.TIMEOUT
        if "validation" in lowered:
            return cls.VALIDATION
        if "quality" in lowered:
            return cls.QUALITY_GATE
        if any(word in lowered for word in ("crash", "segfault", "killed")):
            return cls.CRASH
        return cls.UNKNOWN


# --- ExecutionRecord ---------------------------------------------------------------------


class ExecutionRecord(_StoreModel):
    """One task execution: routing decision, outcome, cost and resources."""

    task_id: UUID = Field(default_factory=uuid4)
    timestamp: StoredDatetime = Field(default_factory=_now_utc)
    task_type: Key
    task_description: RequiredText
    repo: Key
    file_count: Int4Count = 0
    estimated_tokens: Int4Count = 0
    model_tier: Key
    pool_type: Key
    swarm_topology: Text | None = None
    routing_confidence: Unit
    complexity_score: Percent = 50
    success: bool
    duration_seconds: Measure
    quality_score: Percent | None = None
    cost_estimate: Measure
    actual_cost: Measure
    error_type: ErrorType | None = None
    error_message: Text | None = None
    user_accepted: bool | None = None
    user_rating: Rating | None = None
    peak_memory_mb: Measure | None = None
    cpu_time_seconds: Measure | None = None
    solution_summary: Text | None = None
    metadata: JsonObject = Field(default_factory=dict)
    recommendation_id: UUID | None = None
    """The route recommendation this execution followed (or not), when the router asked
    :meth:`~orb_learning.LearningDatabase.recommend_route` first."""

    def calculate_embedding_content(self) -> str:
        """The first version's labelled string, kept for compatibility.

        The store embeds :meth:`embedding_text` instead.
        """
        parts = [
            f"Task: {self.task_type}",
            f"Description: {self.task_description}",
            f"Repository: {self.repo}",
            f"Model Tier: {self.model_tier}",
            f"Pool: {self.pool_type}",
        ]
        if self.swarm_topology:
            parts.append(f"Topology: {self.swarm_topology}")
        parts.append(f"Success: {self.success}")
        if self.solution_summary:
            parts.append(f"Solution: {self.solution_summary}")
        return " | ".join(parts)

    def embedding_text(self) -> str:
        """The text the store embeds: the task description alone.

        Search embeds the query text, which looks like a task description. Embedding the
        labelled string put the first version's own quick-start example ("Optimize slow
        queries" against a stored "Optimize database queries") at cosine 0.38, under its
        0.7 default threshold; the description alone gives 0.87.
        """
        return self.task_description

    def calculate_prediction_error(self) -> dict[str, float]:
        """Cost prediction error: absolute (symmetric, >= 0) and relative to the estimate.

        The percentage is 0.0 when the estimate is 0, as in the first version.
        """
        cost_error_abs = abs(self.actual_cost - self.cost_estimate)
        cost_error_pct = (
            cost_error_abs / self.cost_estimate * 100 if self.cost_estimate > 0 else 0.0
        )
        return {"cost_error_abs": cost_error_abs, "cost_error_pct": cost_error_pct}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict keyed by field name, Python types kept (UUID, aware datetime, enum).

        ``metadata`` is a deep copy, so callers may mutate the result freely.
        """
        data = self.model_dump()
        data["metadata"] = copy.deepcopy(self.metadata)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Validate a dict from :meth:`to_dict` or from ``model_dump(mode="json")``."""
        return cls.model_validate(dict(data))


# --- other tables ------------------------------------------------------------------------


class SolutionRecord(_StoreModel):
    """A reusable solution pattern extracted from successful executions."""

    pattern_id: UUID = Field(default_factory=uuid4)
    extracted_at: UtcDatetime = Field(default_factory=_now_utc)
    task_context: Text
    solution_summary: Text
    success_rate: Unit
    usage_count: Int4Count = 0
    repos_used_in: list[Text] = Field(default_factory=list)
    embedding: list[float] | None = None


class FeedbackRecord(_StoreModel):
    """A user's rating of one execution; anonymous (``user_id=None``) by default."""

    feedback_id: UUID = Field(default_factory=uuid4)
    task_id: UUID
    timestamp: StoredDatetime = Field(default_factory=_now_utc)
    feedback_type: Annotated[Text, AfterValidator(_not_blank)]
    rating: Rating
    comment: Text | None = None
    user_id: UUID | None = None

    @model_validator(mode="after")
    def _distinct_ids(self) -> Self:
        """A feedback row sharing its execution's id would be a copy-paste bug upstream."""
        if self.feedback_id == self.task_id:
            raise ValueError("feedback_id must differ from task_id")
        return self


class QualityPolicy(_StoreModel):
    """The quality-gate settings in force for one repository, and why they changed."""

    policy_id: UUID = Field(default_factory=uuid4)
    repo: Text
    project_maturity: Text
    coverage_threshold: Unit
    strictness_level: Literal["lenient", "standard", "strict"]
    last_adjusted: UtcDatetime = Field(default_factory=_now_utc)
    adjustment_reason: Text
