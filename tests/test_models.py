"""Tests of orb_learning.models (no database needed)."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from orb_learning.models import (
    INT4_MAX,
    MAX_KEY_LENGTH,
    MAX_MEASURE,
    ErrorType,
    ExecutionRecord,
    FeedbackRecord,
    QualityPolicy,
    SolutionRecord,
)

NUL_MSG = "contains a NUL character, which PostgreSQL text cannot store"


def execution_kwargs(**overrides: Any) -> dict[str, Any]:
    """The required fields of an ExecutionRecord, plus overrides."""
    base: dict[str, Any] = {
        "task_type": "refactor",
        "task_description": "Optimize database queries",
        "repo": "mahavishnu",
        "model_tier": "medium",
        "pool_type": "mahavishnu",
        "routing_confidence": 0.8,
        "success": True,
        "duration_seconds": 12.5,
        "cost_estimate": 0.02,
        "actual_cost": 0.025,
    }
    base.update(overrides)
    return base


def solution_kwargs(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task_context": "slow SQL",
        "solution_summary": "add an index",
        "success_rate": 0.9,
    }
    base.update(overrides)
    return base


def feedback_kwargs(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"task_id": uuid4(), "feedback_type": "rating", "rating": 4}
    base.update(overrides)
    return base


def policy_kwargs(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "repo": "mahavishnu",
        "project_maturity": "stable",
        "coverage_threshold": 0.8,
        "strictness_level": "standard",
        "adjustment_reason": "coverage stable for 30 days",
    }
    base.update(overrides)
    return base


MODELS: dict[str, tuple[type[Any], Any]] = {
    "execution": (ExecutionRecord, execution_kwargs),
    "solution": (SolutionRecord, solution_kwargs),
    "feedback": (FeedbackRecord, feedback_kwargs),
    "policy": (QualityPolicy, policy_kwargs),
}


def assert_rejected(model: type[Any], field: str, kwargs: dict[str, Any]) -> ValidationError:
    """Building ``model`` fails, and the first error is about ``field``."""
    with pytest.raises(ValidationError) as info:
        model(**kwargs)
    assert info.value.errors()[0]["loc"][0] == field
    return info.value


# --- module ------------------------------------------------------------------------------


def test_import_does_not_pull_numpy() -> None:
    root = Path(__file__).resolve().parent.parent
    code = "import sys, orb_learning.models; sys.exit('numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


def test_execution_fields_in_order() -> None:
    assert list(ExecutionRecord.model_fields) == [
        "task_id", "timestamp", "task_type", "task_description", "repo", "file_count",
        "estimated_tokens", "model_tier", "pool_type", "swarm_topology", "routing_confidence",
        "complexity_score", "success", "duration_seconds", "quality_score", "cost_estimate",
        "actual_cost", "error_type", "error_message", "user_accepted", "user_rating",
        "peak_memory_mb", "cpu_time_seconds", "solution_summary", "metadata",
        "recommendation_id",  # revision 0010
    ]  # fmt: skip


# --- ExecutionRecord: defaults -----------------------------------------------------------


def test_execution_defaults() -> None:
    before = datetime.now(UTC)
    r = ExecutionRecord(**execution_kwargs())
    after = datetime.now(UTC)
    assert isinstance(r.task_id, UUID) and r.task_id.version == 4
    assert r.timestamp.tzinfo is UTC
    assert before <= r.timestamp <= after
    assert (r.file_count, r.estimated_tokens, r.complexity_score) == (0, 0, 50)
    assert r.metadata == {}
    for name in (
        "swarm_topology", "quality_score", "error_type", "error_message", "user_accepted",
        "user_rating", "peak_memory_mb", "cpu_time_seconds", "solution_summary",
    ):  # fmt: skip
        assert getattr(r, name) is None, name


def test_defaults_not_shared_between_instances() -> None:
    a = ExecutionRecord(**execution_kwargs())
    b = ExecutionRecord(**execution_kwargs())
    a.metadata["k"] = 1
    assert b.metadata == {}
    assert a.task_id != b.task_id
    s1, s2 = SolutionRecord(**solution_kwargs()), SolutionRecord(**solution_kwargs())
    s1.repos_used_in.append("x")
    assert s2.repos_used_in == []


@pytest.mark.parametrize(
    "field",
    ["task_type", "task_description", "repo", "model_tier", "pool_type", "routing_confidence",
     "success", "duration_seconds", "cost_estimate", "actual_cost"],
)  # fmt: skip
def test_execution_required_fields(field: str) -> None:
    kwargs = execution_kwargs()
    del kwargs[field]
    error = assert_rejected(ExecutionRecord, field, kwargs)
    assert error.errors()[0]["type"] == "missing"


# --- ranges ------------------------------------------------------------------------------

EXECUTION_BOUNDS = [
    # field, accepted at the edge, rejected just past it
    ("routing_confidence", [0.0, 1.0], [-1e-9, 1.0000001]),
    ("complexity_score", [0, 100], [-1, 101]),
    ("file_count", [0, INT4_MAX], [-1, INT4_MAX + 1]),
    ("estimated_tokens", [0, INT4_MAX], [-1, INT4_MAX + 1]),
    ("duration_seconds", [0.0, MAX_MEASURE], [-1e-9, MAX_MEASURE * 1.000001, 1e308]),
    ("quality_score", [0, 100, None], [-1, 101]),
    ("cost_estimate", [0.0, MAX_MEASURE], [-1e-9, MAX_MEASURE * 1.000001]),
    ("actual_cost", [0.0, MAX_MEASURE], [-1e-9, MAX_MEASURE * 1.000001]),
    ("user_rating", [1, 5, None], [0, 6]),
    ("peak_memory_mb", [0.0, MAX_MEASURE, None], [-1e-9, MAX_MEASURE * 1.000001]),
    ("cpu_time_seconds", [0.0, MAX_MEASURE, None], [-1e-9, MAX_MEASURE * 1.000001]),
    ("repo", ["r" * MAX_KEY_LENGTH, "\U0001f600" * MAX_KEY_LENGTH], ["r" * (MAX_KEY_LENGTH + 1)]),
    ("task_type", ["t" * MAX_KEY_LENGTH], ["t" * (MAX_KEY_LENGTH + 1)]),
    ("model_tier", ["m" * MAX_KEY_LENGTH], ["m" * (MAX_KEY_LENGTH + 1)]),
    ("pool_type", ["p" * MAX_KEY_LENGTH], ["p" * (MAX_KEY_LENGTH + 1)]),
]


@pytest.mark.parametrize(("field", "good", "bad"), EXECUTION_BOUNDS)
def test_execution_bounds(field: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert getattr(ExecutionRecord(**execution_kwargs(**{field: value})), field) == value
    for value in bad:
        assert_rejected(ExecutionRecord, field, execution_kwargs(**{field: value}))


OTHER_BOUNDS = [
    (SolutionRecord, solution_kwargs, "success_rate", [0.0, 1.0], [-1e-9, 1.0000001]),
    (SolutionRecord, solution_kwargs, "usage_count", [0, INT4_MAX], [-1, INT4_MAX + 1]),
    (FeedbackRecord, feedback_kwargs, "rating", [1, 5], [0, 6]),
    (QualityPolicy, policy_kwargs, "coverage_threshold", [0.0, 1.0], [-1e-9, 1.0000001]),
]


@pytest.mark.parametrize(("model", "make", "field", "good", "bad"), OTHER_BOUNDS)
def test_other_bounds(model: Any, make: Any, field: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert getattr(model(**make(**{field: value})), field) == value
    for value in bad:
        assert_rejected(model, field, make(**{field: value}))


FLOAT_FIELDS = [
    (ExecutionRecord, execution_kwargs, field)
    for field in ("routing_confidence", "duration_seconds", "cost_estimate", "actual_cost",
                  "peak_memory_mb", "cpu_time_seconds")
] + [
    (SolutionRecord, solution_kwargs, "success_rate"),
    (QualityPolicy, policy_kwargs, "coverage_threshold"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "make", "field"), FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_rejected(model: Any, make: Any, field: str, value: float) -> None:
    assert_rejected(model, field, make(**{field: value}))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_embedding_rejected(value: float) -> None:
    with pytest.raises(ValidationError) as info:
        SolutionRecord(**solution_kwargs(embedding=[0.1, value]))
    assert info.value.errors()[0]["loc"] == ("embedding", 1)


# --- text --------------------------------------------------------------------------------

TEXT_FIELDS = [
    (ExecutionRecord, execution_kwargs, field)
    for field in ("task_type", "task_description", "repo", "model_tier", "pool_type",
                  "swarm_topology", "error_message", "solution_summary")
] + [
    (SolutionRecord, solution_kwargs, "task_context"),
    (SolutionRecord, solution_kwargs, "solution_summary"),
    (FeedbackRecord, feedback_kwargs, "feedback_type"),
    (FeedbackRecord, feedback_kwargs, "comment"),
    (QualityPolicy, policy_kwargs, "repo"),
    (QualityPolicy, policy_kwargs, "project_maturity"),
    (QualityPolicy, policy_kwargs, "adjustment_reason"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "make", "field"), TEXT_FIELDS)
def test_nul_rejected_in_text(model: Any, make: Any, field: str) -> None:
    assert model(**make(**{field: "ok\x01 text"}))  # other control characters are fine
    error = assert_rejected(model, field, make(**{field: "bad\x00text"}))
    assert NUL_MSG in error.errors()[0]["msg"]


@pytest.mark.parametrize("value", ["lone \ud800 surrogate", "\udfff"])
def test_unpaired_surrogates_rejected(value: str) -> None:
    error = assert_rejected(
        ExecutionRecord, "task_description", execution_kwargs(task_description=value)
    )
    assert "surrogate" in error.errors()[0]["msg"]
    with pytest.raises(ValidationError, match="surrogate"):
        ExecutionRecord(**execution_kwargs(metadata={"k": value}))


def test_nul_rejected_in_repos_used_in() -> None:
    with pytest.raises(ValidationError) as info:
        SolutionRecord(**solution_kwargs(repos_used_in=["a", "b\x00"]))
    assert info.value.errors()[0]["loc"] == ("repos_used_in", 1)
    assert NUL_MSG in info.value.errors()[0]["msg"]


@pytest.mark.parametrize("field", ["task_type", "task_description", "repo", "model_tier",
                                   "pool_type"])  # fmt: skip
def test_empty_required_text_rejected_whitespace_kept(field: str) -> None:
    error = assert_rejected(ExecutionRecord, field, execution_kwargs(**{field: ""}))
    assert "must not be empty" in error.errors()[0]["msg"]
    assert getattr(ExecutionRecord(**execution_kwargs(**{field: "  "})), field) == "  "


def test_unicode_pool_type_kept_exactly() -> None:
    value = " pöol 🚀 "
    r = ExecutionRecord(**execution_kwargs(pool_type=value, repo="répo/日本"))
    assert r.pool_type == value
    assert r.repo == "répo/日本"


# --- metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {"k\x00": 1},
        {"k": "v\x00"},
        {"outer": {"inner\x00": 1}},
        {"outer": [1, {"deep": ["x", "y\x00"]}]},
    ],
)
def test_nul_rejected_in_metadata(metadata: dict[str, Any]) -> None:
    error = assert_rejected(ExecutionRecord, "metadata", execution_kwargs(metadata=metadata))
    assert NUL_MSG in error.errors()[0]["msg"]


def _circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(
    "metadata",
    [
        {"x": math.nan},
        {"x": [1.0, math.inf]},
        {"x": {"y": -math.inf}},
        {"x": object()},
        {"x": {1, 2}},
        {"x": datetime(2024, 1, 1)},
        {"x": uuid4()},
        {"x": b"bytes"},
        {"x": {1: "int key"}},
        {"x": _circular()},
    ],
    ids=["nan", "inf", "-inf", "object", "set", "datetime", "uuid", "bytes", "intkey", "loop"],
)
def test_non_json_metadata_rejected(metadata: dict[str, Any]) -> None:
    assert_rejected(ExecutionRecord, "metadata", execution_kwargs(metadata=metadata))


def test_json_metadata_accepted() -> None:
    metadata = {"a": [1, 2.5, None, True, "s"], "b": {"c": {"d": []}}, "é🚀": ""}
    assert ExecutionRecord(**execution_kwargs(metadata=metadata)).metadata == metadata


# --- assignment and extra fields ---------------------------------------------------------


def test_validate_assignment() -> None:
    r = ExecutionRecord(**execution_kwargs())
    with pytest.raises(ValidationError) as info:
        r.routing_confidence = 2
    assert info.value.errors()[0]["loc"] == ("routing_confidence",)
    assert r.routing_confidence == 0.8
    with pytest.raises(ValidationError):
        r.repo = "a\x00b"
    with pytest.raises(ValidationError):
        r.metadata = {"x": math.nan}
    r.timestamp = datetime(2024, 1, 1)
    assert r.timestamp.tzinfo is UTC
    r.error_type = "crash"  # type: ignore[assignment]
    assert r.error_type is ErrorType.CRASH


def test_extra_fields_forbidden() -> None:
    error = assert_rejected(ExecutionRecord, "embedding", execution_kwargs(embedding=[0.1]))
    assert error.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError):
        QualityPolicy(**policy_kwargs(unknown=1))


# --- timestamps --------------------------------------------------------------------------


def test_naive_timestamp_becomes_utc() -> None:
    r = ExecutionRecord(**execution_kwargs(timestamp=datetime(2024, 5, 1, 12, 30)))
    assert r.timestamp == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert r.timestamp.tzinfo is UTC


def test_aware_timestamp_keeps_tzinfo() -> None:
    plus2 = timezone(timedelta(hours=2))
    value = datetime(2024, 5, 1, 12, 30, tzinfo=plus2)
    r = ExecutionRecord(**execution_kwargs(timestamp=value))
    assert r.timestamp.tzinfo is plus2
    assert r.timestamp.hour == 12


def test_iso_string_timestamps() -> None:
    z = ExecutionRecord(**execution_kwargs(timestamp="2024-05-01T12:30:00Z"))
    assert z.timestamp.tzinfo is UTC
    off = ExecutionRecord(**execution_kwargs(timestamp="2024-05-01T12:30:00+02:00"))
    assert off.timestamp.utcoffset() == timedelta(hours=2)
    assert off.timestamp.tzinfo == timezone(timedelta(hours=2))
    naive = ExecutionRecord(**execution_kwargs(timestamp="2024-05-01T12:30:00"))
    assert naive.timestamp == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


# --- methods -----------------------------------------------------------------------------


def test_embedding_content_minimal() -> None:
    r = ExecutionRecord(**execution_kwargs(success=False))
    assert r.calculate_embedding_content() == (
        "Task: refactor | Description: Optimize database queries | Repository: mahavishnu"
        " | Model Tier: medium | Pool: mahavishnu | Success: False"
    )


def test_embedding_content_full() -> None:
    r = ExecutionRecord(
        **execution_kwargs(swarm_topology="mesh", solution_summary="Added an index")
    )
    assert r.calculate_embedding_content() == (
        "Task: refactor | Description: Optimize database queries | Repository: mahavishnu"
        " | Model Tier: medium | Pool: mahavishnu | Topology: mesh | Success: True"
        " | Solution: Added an index"
    )


def test_embedding_content_skips_empty_optional_parts() -> None:
    r = ExecutionRecord(**execution_kwargs(swarm_topology="", solution_summary=""))
    content = r.calculate_embedding_content()
    assert "Topology" not in content and "Solution" not in content
    assert content.endswith(" | Success: True")


def test_embedding_text_is_description() -> None:
    r = ExecutionRecord(**execution_kwargs(task_description="Fix the flaky test", repo="x"))
    assert r.embedding_text() == "Fix the flaky test"


@pytest.mark.parametrize(
    ("estimate", "actual", "abs_error", "pct_error"),
    [
        (0.02, 0.025, 0.005, 25.0),
        (0.025, 0.02, 0.005, 20.0),
        (1.0, 1.0, 0.0, 0.0),
        (0.0, 0.5, 0.5, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        (2.0, 0.0, 2.0, 100.0),
    ],
)
def test_prediction_error(
    estimate: float, actual: float, abs_error: float, pct_error: float
) -> None:
    r = ExecutionRecord(**execution_kwargs(cost_estimate=estimate, actual_cost=actual))
    error = r.calculate_prediction_error()
    assert set(error) == {"cost_error_abs", "cost_error_pct"}
    assert error["cost_error_abs"] == pytest.approx(abs_error)
    assert error["cost_error_pct"] == pytest.approx(pct_error)


costs = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(a=costs, b=costs)
def test_prediction_error_abs_symmetric(a: float, b: float) -> None:
    ab = ExecutionRecord(**execution_kwargs(cost_estimate=a, actual_cost=b))
    ba = ExecutionRecord(**execution_kwargs(cost_estimate=b, actual_cost=a))
    error_ab, error_ba = ab.calculate_prediction_error(), ba.calculate_prediction_error()
    assert error_ab["cost_error_abs"] == error_ba["cost_error_abs"] >= 0
    if a == 0:
        assert error_ab["cost_error_abs"] == b and error_ab["cost_error_pct"] == 0.0


def test_to_dict_types_and_copy() -> None:
    plus2 = timezone(timedelta(hours=2))
    r = ExecutionRecord(
        **execution_kwargs(
            timestamp=datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=plus2),
            error_type="timeout",
            metadata={"nested": {"list": [1, 2]}},
        )
    )
    data = r.to_dict()
    assert list(data) == list(ExecutionRecord.model_fields)
    assert type(data["task_id"]) is UUID and data["task_id"] == r.task_id
    assert data["timestamp"].tzinfo is plus2
    assert data["error_type"] is ErrorType.TIMEOUT
    data["metadata"]["nested"]["list"].append(3)
    assert r.metadata == {"nested": {"list": [1, 2]}}
    assert ExecutionRecord.from_dict(r.to_dict()) == r


def test_from_dict_accepts_json_form() -> None:
    task_id = uuid4()
    r = ExecutionRecord.from_dict(
        execution_kwargs(
            task_id=str(task_id), timestamp="2024-01-02T03:04:05.000006Z", error_type="crash"
        )
    )
    assert r.task_id == task_id and type(r.task_id) is UUID
    assert r.timestamp == datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert r.error_type is ErrorType.CRASH


def test_from_dict_validates() -> None:
    with pytest.raises(ValidationError):
        ExecutionRecord.from_dict(execution_kwargs(routing_confidence=1.5))
    with pytest.raises(ValidationError):
        ExecutionRecord.from_dict(execution_kwargs(error_type="rate_limit"))


# --- hypothesis round trips --------------------------------------------------------------

# Everything PostgreSQL text can hold: any code point but NUL and the lone surrogates.
storable = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
text = st.text(storable, max_size=30)
required_text = st.text(storable, min_size=1, max_size=30)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
offsets = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
unit = st.floats(0, 1)
non_neg = st.floats(min_value=0, max_value=MAX_MEASURE)
# Naive bounds, so that any offset of up to a day keeps the UTC value storable.
storable_times = {"min_value": datetime(1970, 1, 3), "max_value": datetime(2026, 1, 1)}


def records(timezones: st.SearchStrategy[Any]) -> st.SearchStrategy[ExecutionRecord]:
    return st.builds(
        ExecutionRecord,
        task_id=st.uuids(),
        timestamp=st.datetimes(timezones=timezones, **storable_times),
        task_type=required_text,
        task_description=required_text,
        repo=required_text,
        model_tier=required_text,
        pool_type=required_text,
        file_count=st.integers(0, INT4_MAX),
        estimated_tokens=st.integers(0, INT4_MAX),
        swarm_topology=st.none() | text,
        routing_confidence=unit,
        complexity_score=st.integers(0, 100),
        success=st.booleans(),
        duration_seconds=non_neg,
        quality_score=st.none() | st.integers(0, 100),
        cost_estimate=non_neg,
        actual_cost=non_neg,
        error_type=st.none() | st.sampled_from(ErrorType),
        error_message=st.none() | text,
        user_accepted=st.none() | st.booleans(),
        user_rating=st.none() | st.integers(1, 5),
        peak_memory_mb=st.none() | non_neg,
        cpu_time_seconds=st.none() | non_neg,
        solution_summary=st.none() | text,
        metadata=st.dictionaries(text, json_value, max_size=4),
    )


@settings(max_examples=200)
@given(records(st.none() | st.just(UTC) | offsets))
def test_dict_round_trip(record: ExecutionRecord) -> None:
    back = ExecutionRecord.from_dict(record.to_dict())
    assert back == record
    assert type(back.task_id) is UUID
    assert back.timestamp.tzinfo == record.timestamp.tzinfo
    assert back.timestamp.utcoffset() == record.timestamp.utcoffset()
    assert back.metadata == record.metadata


@settings(max_examples=200)
@given(records(st.none() | st.just(UTC)))
def test_json_round_trip(record: ExecutionRecord) -> None:
    back = ExecutionRecord.from_dict(record.model_dump(mode="json"))
    assert back == record
    assert back.timestamp.tzinfo is UTC
    assert type(back.task_id) is UUID


# --- ErrorType ---------------------------------------------------------------------------


def test_error_type_values() -> None:
    assert {e.name: e.value for e in ErrorType} == {
        "TIMEOUT": "timeout",
        "QUALITY_GATE": "quality_gate",
        "CRASH": "crash",
        "VALIDATION": "validation",
        "UNKNOWN": "unknown",
    }
    assert isinstance(ErrorType.CRASH, str)
    assert ErrorType("crash") is ErrorType.CRASH and ErrorType.CRASH.value == "crash"
    assert str.__eq__(ErrorType.CRASH, "crash")


@pytest.mark.parametrize(
    ("text_in", "expected"),
    [
        (None, None),
        ("", None),
        ("timeout", ErrorType.TIMEOUT),
        ("QUALITY_GATE", ErrorType.QUALITY_GATE),
        ("Unknown", ErrorType.UNKNOWN),
        ("Crash", ErrorType.CRASH),
        ("Request TIMEOUT after 30s", ErrorType.TIMEOUT),
        ("worker timed out", ErrorType.TIMEOUT),
        ("validation_error", ErrorType.VALIDATION),
        ("Schema Validation failed", ErrorType.VALIDATION),
        ("quality gate failed: coverage 40%", ErrorType.QUALITY_GATE),
        ("process crashed", ErrorType.CRASH),
        ("Segfault in worker", ErrorType.CRASH),
        ("worker killed by OOM", ErrorType.CRASH),
        ("rate_limit", ErrorType.UNKNOWN),
        ("network_error", ErrorType.UNKNOWN),
        ("validation timed out", ErrorType.TIMEOUT),  # timeout is checked first
    ],
)
def test_error_type_from_text(text_in: str | None, expected: ErrorType | None) -> None:
    assert ErrorType.from_text(text_in) is expected


def test_error_type_field_accepts_values_only() -> None:
    assert ExecutionRecord(**execution_kwargs(error_type="quality_gate")).error_type is (
        ErrorType.QUALITY_GATE
    )
    assert_rejected(ExecutionRecord, "error_type", execution_kwargs(error_type="rate_limit"))


# --- SolutionRecord ----------------------------------------------------------------------


def test_solution_defaults_and_order() -> None:
    before = datetime.now(UTC)
    s = SolutionRecord(**solution_kwargs(repos_used_in=["zeta", "alpha", "mid"]))
    assert isinstance(s.pattern_id, UUID) and s.pattern_id.version == 4
    assert s.extracted_at.tzinfo is UTC and before <= s.extracted_at <= datetime.now(UTC)
    assert s.usage_count == 0 and s.embedding is None
    assert s.repos_used_in == ["zeta", "alpha", "mid"]
    assert SolutionRecord(**solution_kwargs()).repos_used_in == []
    naive = SolutionRecord(**solution_kwargs(extracted_at=datetime(2024, 1, 1)))
    assert naive.extracted_at.tzinfo is UTC
    assert SolutionRecord(**solution_kwargs(embedding=[0.5] * 384)).embedding == [0.5] * 384


# --- FeedbackRecord ----------------------------------------------------------------------


def test_feedback_defaults() -> None:
    task_id = uuid4()
    f = FeedbackRecord(task_id=task_id, feedback_type="thumbs_up", rating=5)
    assert f.task_id == task_id
    assert isinstance(f.feedback_id, UUID) and f.feedback_id.version == 4
    assert f.feedback_id != task_id
    assert f.user_id is None and f.comment is None
    assert f.timestamp.tzinfo is UTC
    naive = FeedbackRecord(**feedback_kwargs(timestamp=datetime(2024, 1, 1)))
    assert naive.timestamp.tzinfo is UTC


def test_feedback_required() -> None:
    assert_rejected(FeedbackRecord, "task_id", {"feedback_type": "x", "rating": 3})
    assert_rejected(FeedbackRecord, "rating", {"task_id": uuid4(), "feedback_type": "x"})


def test_feedback_id_must_differ_from_task_id() -> None:
    same = uuid4()
    with pytest.raises(ValidationError, match="feedback_id must differ from task_id"):
        FeedbackRecord(**feedback_kwargs(task_id=same, feedback_id=same))
    f = FeedbackRecord(**feedback_kwargs())
    with pytest.raises(ValidationError, match="feedback_id must differ from task_id"):
        f.feedback_id = f.task_id


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_feedback_type_blank_rejected(value: str) -> None:
    assert_rejected(FeedbackRecord, "feedback_type", feedback_kwargs(feedback_type=value))


def test_feedback_type_kept_as_given() -> None:
    assert FeedbackRecord(**feedback_kwargs(feedback_type=" comment ")).feedback_type == (
        " comment "
    )


def test_feedback_user_id() -> None:
    user = uuid4()
    assert FeedbackRecord(**feedback_kwargs(user_id=user)).user_id == user
    assert_rejected(FeedbackRecord, "user_id", feedback_kwargs(user_id="not-a-uuid"))


# --- QualityPolicy -----------------------------------------------------------------------


def test_policy_defaults() -> None:
    before = datetime.now(UTC)
    p = QualityPolicy(**policy_kwargs())
    assert isinstance(p.policy_id, UUID) and p.policy_id.version == 4
    assert p.last_adjusted.tzinfo is UTC
    assert before <= p.last_adjusted <= datetime.now(UTC)
    assert QualityPolicy(**policy_kwargs(last_adjusted=datetime(2024, 1, 1))).last_adjusted == (
        datetime(2024, 1, 1, tzinfo=UTC)
    )
    parsed = QualityPolicy(**policy_kwargs(last_adjusted="2024-01-01T00:00:00Z"))
    assert parsed.last_adjusted.tzinfo is UTC


@pytest.mark.parametrize("level", ["lenient", "standard", "strict"])
def test_policy_strictness_accepted(level: str) -> None:
    assert QualityPolicy(**policy_kwargs(strictness_level=level)).strictness_level == level


@pytest.mark.parametrize("level", ["medium", "Strict", "", None])
def test_policy_strictness_rejected(level: str | None) -> None:
    assert_rejected(QualityPolicy, "strictness_level", policy_kwargs(strictness_level=level))


@pytest.mark.parametrize("name", list(MODELS))
def test_all_models_forbid_extra_and_validate_assignment(name: str) -> None:
    model, make = MODELS[name]
    with pytest.raises(ValidationError):
        model(**make(not_a_field=1))
    instance = model(**make())
    ts_field = next(f for f, info in model.model_fields.items() if info.annotation is datetime)
    setattr(instance, ts_field, datetime(2020, 1, 1))
    assert getattr(instance, ts_field).tzinfo is UTC
