"""How events become records (no database needed): keys, fallbacks and derived fields."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orb_learning import ErrorType, ExecutionRecord
from orb_learning.telemetry import (
    EXECUTION_OUTCOME,
    FEEDBACK,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
)
from orb_learning.telemetry._correlate import Correlator
from orb_learning.telemetry._events import BadEvent, parse_half
from orb_learning.telemetry._intake import freeze, precheck
from orb_learning.telemetry._jsonable import jsonable
from orb_learning.testing import ModelRouting, ModelTier

NOW = datetime(2026, 5, 2, 9, 30, tzinfo=UTC)
TASK = {"type": "test", "description": "Add tests for the parser", "repo": "mahavishnu"}


def correlate(*events: tuple[str, dict[str, Any]]) -> ExecutionRecord:
    correlator = Correlator(ttl=60)
    result = None
    for event_type, data in events:
        result = correlator.add(parse_half(event_type, data, NOW))
    assert isinstance(result, ExecutionRecord), result
    assert len(correlator) == 0
    return result


def routing(task_id: uuid.UUID, routing: Any, **task: Any) -> tuple[str, dict[str, Any]]:
    return ROUTING_DECISION, {"task_id": task_id, "routing": routing, "task_data": {**TASK, **task}}


def test_the_routers_object_with_an_enum_tier_and_derived_cost() -> None:
    task_id = uuid.uuid4()
    router = ModelRouting(ModelTier.LARGE, "opus", 0.9, 81, "hard task", cost_per_1k_tokens=0.015)
    record = correlate(
        routing(task_id, router, files=["a.py", "b.py"], estimated_tokens=4000),
        (EXECUTION_OUTCOME, {"task_id": str(task_id), "success": True, "duration": 12.5}),
    )
    assert (record.model_tier, record.routing_confidence, record.complexity_score) == (
        "large",
        0.9,
        81,
    )
    assert record.cost_estimate == pytest.approx(0.06)  # 4000 / 1000 * 0.015
    assert (record.file_count, record.estimated_tokens, record.duration_seconds) == (2, 4000, 12.5)
    assert record.metadata == {"model": "opus", "routing_reason": "hard task"}
    assert record.pool_type == "unknown" and record.timestamp == NOW
    assert record.user_rating is None and record.user_accepted is None


def test_the_recommendation_id_rides_on_the_routing_decision() -> None:
    """At the event's top level or in the routing mapping (a string or a UUID)."""
    recommended = uuid.uuid4()
    for where in ("event", "routing"):
        task_id = uuid.uuid4()
        route = {"tier": "large", "confidence": 0.8, "pool": "runpod"}
        kind, event = routing(task_id, route)
        if where == "event":
            event["recommendation_id"] = recommended
        else:
            route["recommendation_id"] = str(recommended)
        record = correlate(
            (kind, event),
            (EXECUTION_OUTCOME, {"task_id": task_id, "success": True, "duration": 1.0}),
        )
        assert record.recommendation_id == recommended, where
    kind, event = routing(uuid.uuid4(), {"tier": "large", "confidence": 0.8})
    assert (
        correlate(
            (kind, event),
            (EXECUTION_OUTCOME, {"task_id": event["task_id"], "success": True, "duration": 1.0}),
        ).recommendation_id
        is None
    )
    with pytest.raises(BadEvent, match="recommendation_id"):
        parse_half(kind, {**event, "recommendation_id": "not a uuid"}, NOW)


def test_a_pool_result_gives_success_duration_error_and_pool() -> None:
    task_id = uuid.uuid4()
    result = {
        "task_id": task_id,
        "pool_id": "pool-7",
        "worker_id": "w-2",
        "status": "failed",
        "output": "",
        "error": "Validation failed: missing field",
        "duration": 3.0,
    }
    record = correlate(
        (POOL_EXECUTION_COMPLETE, result), routing(task_id, {"tier": "small", "confidence": 0.4})
    )
    assert record.success is False and record.duration_seconds == 3.0
    assert record.error_type is ErrorType.VALIDATION
    assert record.error_message == "Validation failed: missing field"
    assert record.pool_type == "pool-7" and record.actual_cost == 0.0
    assert record.metadata == {"pool_id": "pool-7", "worker_id": "w-2"}


def test_the_duration_comes_from_the_pool_start_when_not_given() -> None:
    task_id = uuid.uuid4()
    correlator = Correlator(ttl=60)
    outcome = {"task_id": task_id, "status": "completed", "timestamp": NOW.timestamp() + 42}
    for event_type, data in (
        routing(task_id, {"model_tier": "medium", "routing_confidence": 0.7, "pool": "gpu"}),
        (EXECUTION_OUTCOME, outcome),
    ):
        assert correlator.add(parse_half(event_type, data, NOW)) is None  # waits for the start
    start = {"task_id": task_id, "pool_id": "p", "timestamp": NOW.isoformat()}
    record = correlator.add(parse_half(POOL_EXECUTION_START, start, NOW))
    assert isinstance(record, ExecutionRecord)
    assert record.duration_seconds == pytest.approx(42.0)
    assert record.success is True and record.pool_type == "gpu"


@pytest.mark.parametrize(
    ("routing_pool", "outcome_pool", "start_pool", "expected"),
    [
        ("r", "o", "s", "r"),
        (None, "o", "s", "o"),
        (None, None, "s", "s"),
        (None, None, None, "pool-id"),
    ],
)
def test_pool_type_precedence(
    routing_pool: str | None, outcome_pool: str | None, start_pool: str | None, expected: str
) -> None:
    task_id = uuid.uuid4()
    decision = {"tier": "small", "confidence": 0.5, "pool": routing_pool}
    outcome = {"task_id": task_id, "success": True, "duration_seconds": 1.0}
    start = {"task_id": task_id, "pool_id": "pool-id", "pool_type": start_pool}
    record = correlate(
        (POOL_EXECUTION_START, start),
        routing(task_id, decision),
        (EXECUTION_OUTCOME, {**outcome, "pool_type": outcome_pool}),
    )
    assert record.pool_type == expected


def test_explicit_values_win_and_timestamps_take_every_form() -> None:
    task_id = uuid.uuid4()
    decision = {
        "tier": "medium",
        "confidence": 0.8,
        "estimated_cost": 0.5,
        "cost_per_1k_tokens": 99.0,
        "complexity_score": 64.6,
    }
    naive = datetime(2026, 1, 1, 8, 0)
    event_type, data = routing(task_id, decision)
    record = correlate(
        (event_type, {**data, "timestamp": naive}),
        (
            EXECUTION_OUTCOME,
            {"task_id": task_id, "success": True, "duration_seconds": 1, "cost": 0.7},
        ),
    )
    assert record.cost_estimate == 0.5 and record.actual_cost == 0.7
    assert record.complexity_score == 65  # rounded
    assert record.timestamp == naive.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("event_type", "data", "reason"),
    [
        (ROUTING_DECISION, {"routing": {}}, "task_id is missing"),
        (ROUTING_DECISION, {"task_id": "x"}, "is not a UUID"),
        (ROUTING_DECISION, {"task_id": uuid.uuid4()}, "routing is missing"),
        (ROUTING_DECISION, {"task_id": uuid.uuid4(), "routing": {"tier": "s"}}, "description"),
        (EXECUTION_OUTCOME, {"task_id": uuid.uuid4()}, "success (or status)"),
        (EXECUTION_OUTCOME, {"task_id": uuid.uuid4(), "success": 1.5}, "success"),
        (POOL_EXECUTION_START, {"task_id": uuid.uuid4(), "timestamp": []}, "timestamp"),
    ],
)
def test_bad_events_name_their_problem(event_type: str, data: Any, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_half(event_type, data, NOW)


def test_orphans_expire_with_their_reason_and_raw_events() -> None:
    correlator = Correlator(ttl=10)
    task_id = uuid.uuid4()
    half = parse_half(*routing(task_id, {"tier": "s", "confidence": 0.5}), NOW)
    assert correlator.add(half) is None
    assert correlator.expire(NOW + timedelta(seconds=9)) == []
    (letter,) = correlator.expire(NOW + timedelta(seconds=10))
    assert letter.task_id == task_id and letter.first_seen_at == NOW
    assert letter.reason == "routing decision without outcome after 10 s"
    assert letter.events[0]["data"]["task_data"] == TASK
    assert correlator.counts["routing"] == 0


def test_jsonable_keeps_raw_events_storable() -> None:
    value = {
        "tier": ModelTier.SMALL,
        "at": NOW,
        "id": uuid.UUID(int=1),
        "text": "a\x00b",
        "nan": float("nan"),
        1: (1, 2),
        "routing": ModelRouting(ModelTier.SMALL, "m", 0.1, 1, "r"),
    }
    out = jsonable(value)
    assert out["tier"] == "small" and out["at"] == NOW.isoformat()
    assert out["id"] == str(uuid.UUID(int=1)) and out["text"] == "a\ufffdb"
    assert out["nan"] == "nan" and out["1"] == [1, 2]
    assert out["routing"]["tier"] == "small" and out["routing"]["confidence"] == 0.1


def test_a_pool_start_after_its_record_is_no_orphan_but_serves_a_rerun() -> None:
    task_id = uuid.uuid4()
    decision = routing(task_id, {"tier": "s", "confidence": 0.5})
    result = {"task_id": task_id, "status": "completed", "duration": 2.0}
    start = {"task_id": task_id, "pool_id": "p", "timestamp": NOW.timestamp()}
    correlator = Correlator(ttl=10)
    assert correlator.add(parse_half(*decision, NOW)) is None
    assert isinstance(
        correlator.add(parse_half(POOL_EXECUTION_COMPLETE, result, NOW)), ExecutionRecord
    )
    assert correlator.add(parse_half(POOL_EXECUTION_START, start, NOW)) is None  # late
    assert sum(correlator.counts.values()) == 0 and correlator.take_all() == []

    correlator.add(parse_half(*decision, NOW))
    correlator.add(parse_half(POOL_EXECUTION_COMPLETE, result, NOW))
    correlator.add(parse_half(POOL_EXECUTION_START, start, NOW))  # late again
    assert correlator.expire(NOW + timedelta(seconds=60)) == []  # dropped, no dead letter

    # The task runs again under the same id, its start first and its result without a
    # duration: the start kept aside gives it.
    correlator = Correlator(ttl=10)
    correlator.add(parse_half(*decision, NOW))
    correlator.add(parse_half(POOL_EXECUTION_COMPLETE, result, NOW))
    correlator.add(parse_half(POOL_EXECUTION_START, start, NOW))
    assert correlator.add(parse_half(*decision, NOW)) is None
    rerun = {"task_id": task_id, "status": "failed", "timestamp": NOW.timestamp() + 8}
    record = correlator.add(parse_half(POOL_EXECUTION_COMPLETE, rerun, NOW))
    assert isinstance(record, ExecutionRecord)
    assert record.success is False and record.duration_seconds == pytest.approx(8.0)


def test_the_call_reads_the_whole_event_objects_included() -> None:
    """The journaled text is the event as it was at the call: containers and objects (the
    router's routing object, enums, datetimes, UUIDs) are read then, so a change made
    afterwards reaches neither the store nor a replay; and the half parsed from that text
    is the half the event itself makes."""
    task_id = uuid.uuid4()

    def event() -> dict[str, Any]:
        router = ModelRouting(ModelTier.SMALL, "haiku", 0.4, 10, "easy")
        task = {**TASK, "files": ["a.py"], "metadata": {"n": (1, [2]), "nul": "a\x00b"}}
        return {"task_id": task_id, "routing": router, "timestamp": NOW, "task_data": task}

    sent = event()
    text = freeze(ROUTING_DECISION, sent)
    sent["routing"].tier = ModelTier.LARGE
    sent["task_data"]["files"].append("b.py")
    sent["task_id"] = "changed"
    data = json.loads(text)
    assert data["task_id"] == str(task_id) and data["timestamp"] == NOW.isoformat()
    assert data["routing"]["tier"] == "small" and data["routing"]["confidence"] == 0.4
    assert data["task_data"]["files"] == ["a.py"]
    assert data["task_data"]["metadata"] == {"n": [1, [2]], "nul": "a\x00b"}  # NUL kept
    later = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_half(ROUTING_DECISION, data, later).fields == (
        parse_half(ROUTING_DECISION, event(), later).fields
    )


class Computed:
    """A routing object whose fields are properties (no __dict__ entry for them)."""

    __slots__ = ("_tier",)

    def __init__(self) -> None:
        self._tier = ModelTier.MEDIUM

    @property
    def tier(self) -> ModelTier:
        return self._tier

    @property
    def confidence(self) -> float:
        return 0.7


def test_the_journaled_text_survives_what_json_does_not_know() -> None:
    cyclic: dict[str, Any] = {"task_id": "t"}
    cyclic["self"] = cyclic
    text = freeze(EXECUTION_OUTCOME, {**cyclic, "success": True, "nan": float("nan")})
    data = json.loads(text)
    assert data["success"] is True and data["nan"] != data["nan"]  # NaN read back
    assert isinstance(data["self"]["self"], dict)  # cut at a depth, not an error
    keyed = json.loads(freeze(EXECUTION_OUTCOME, {"task_id": "t", uuid.UUID(int=1): 2}))
    assert keyed[str(uuid.UUID(int=1))] == 2
    routing = json.loads(freeze(ROUTING_DECISION, {"task_id": "t", "routing": Computed()}))
    assert routing["routing"] == {"tier": "medium", "confidence": 0.7}
    error = json.loads(freeze(EXECUTION_OUTCOME, {"task_id": "t", "error": TimeoutError()}))
    assert error["error"] == "TimeoutError"
    first = json.loads(freeze(FEEDBACK, {"task_id": "t", "rating": 3}))
    assert uuid.UUID(first["feedback_id"])  # given one, so that a replay is no new feedback
    given = {"task_id": "t", "rating": 3, "feedback_id": str(uuid.UUID(int=5))}
    assert json.loads(freeze(FEEDBACK, given)) == given


@pytest.mark.parametrize(
    ("event_type", "data", "reason"),
    [
        (ROUTING_DECISION, None, "an event must be a mapping, not NoneType"),
        (ROUTING_DECISION, {"routing": {}}, "task_id is missing"),
        (EXECUTION_OUTCOME, {"task_id": 7, "success": True}, "task_id must be a UUID"),
        (ROUTING_DECISION, {"task_id": "t"}, "routing is missing"),
        (POOL_EXECUTION_COMPLETE, {"task_id": "t", "pool_id": "p"}, "success (or status)"),
        ("orb_learning.other", {"task_id": "t"}, "unknown event type"),
    ],
)
def test_the_callers_checks_refuse_the_plainly_malformed(
    event_type: str, data: Any, reason: str
) -> None:
    with pytest.raises(BadEvent) as refused:
        precheck(event_type, data)
    assert reason in str(refused.value)


def test_the_callers_checks_leave_the_rest_to_the_full_validation() -> None:
    data = {"task_id": "T-42", "success": True, "duration_seconds": -1.0}
    assert precheck(EXECUTION_OUTCOME, data) == data  # passes here...
    with pytest.raises(BadEvent, match="not a UUID"):
        parse_half(EXECUTION_OUTCOME, data, NOW)  # ...and is refused behind the call
