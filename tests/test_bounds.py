"""What a stored row may hold, enforced at the edge and by the table, so that one accepted
value can never break retention, a refresh or an analytics call for everyone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import numpy as np
import pytest
from pydantic import ValidationError

from orb_learning import (
    ExecutionRecord,
    FeedbackRecord,
    IntegrityError,
    InvalidRecordError,
    LearningDatabase,
    migrations,
)
from orb_learning.errors import ArgumentError
from orb_learning.models import MAX_CLOCK_SKEW, MAX_KEY_LENGTH, MAX_MEASURE
from tests.factories import unit_vectors

NOW = datetime.now(UTC)


def record(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "task_type": "refactor",
        "task_description": "Split the parser module",
        "repo": "acme/api",
        "model_tier": "medium",
        "pool_type": "local",
        "routing_confidence": 0.8,
        "success": True,
        "duration_seconds": 12.0,
        "cost_estimate": 0.01,
        "actual_cost": 0.02,
        "timestamp": NOW - timedelta(days=3),
    }
    return {**fields, **overrides}


REFUSED_TIMES = [
    datetime(1, 1, 1, tzinfo=UTC),  # asyncpg stored it as -infinity
    datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),  # UTC year 10000
    datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5))),  # UTC year 0
    datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
    NOW + MAX_CLOCK_SKEW + timedelta(minutes=5),
    datetime(2150, 1, 1, tzinfo=UTC),
]


@pytest.mark.parametrize(
    "moment",
    REFUSED_TIMES,
    ids=["year-1", "utc-year-10000", "utc-year-0", "before-1970", "past-clock-skew", "2150"],
)  # ids that do not change with the clock: pytest-xdist's workers must collect the same
def test_a_timestamp_outside_the_range_is_a_value_error_naming_it(moment: datetime) -> None:
    for model, fields in (
        (ExecutionRecord, record(timestamp=moment)),
        (FeedbackRecord, {"task_id": "00000000-0000-4000-8000-000000000001", "rating": 3,
                          "feedback_type": "rating", "timestamp": moment}),
    ):  # fmt: skip
        with pytest.raises(ValidationError) as raised:
            model(**fields)
        assert isinstance(raised.value, ValueError)
        assert raised.value.errors()[0]["loc"] == ("timestamp",)
        assert "1970-01-01" in str(raised.value)


def test_the_range_edges_are_accepted() -> None:
    for moment in (datetime(1970, 1, 1, tzinfo=UTC), NOW + MAX_CLOCK_SKEW - timedelta(minutes=1)):
        assert ExecutionRecord(**record(timestamp=moment)).timestamp == moment


async def test_skip_invalid_skips_a_record_with_an_unstorable_timestamp(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    batch = [record(), *(record(timestamp=t) for t in REFUSED_TIMES[:3]), record()]
    stored = await db.store_executions(batch, embeddings=unit_vectors(5), skip_invalid=True)
    assert stored == 2
    assert await connection.fetchval("SELECT count(*) FROM executions") == 2
    with pytest.raises(InvalidRecordError, match="timestamp"):
        await db.store_executions(batch, embeddings=unit_vectors(5))


UNSTORABLE_ROWS = {
    "-infinity timestamp": ("'-infinity'", "1", "'r'"),
    "year 1": ("'0001-01-01 00:00:00+00'", "1", "'r'"),
    "duration 1e308": ("now() - interval '3 days'", "1e308", "'r'"),
    "NaN duration": ("now() - interval '3 days'", "'NaN'", "'r'"),
    "infinite duration": ("now() - interval '3 days'", "'Infinity'", "'r'"),
    "a long repo": ("now() - interval '3 days'", "1", f"repeat('r', {MAX_KEY_LENGTH + 1})"),
}  # fmt: skip
RAW_INSERT = (
    'INSERT INTO executions (task_id, "timestamp", task_type, task_description, repo, '
    "model_tier, pool_type, routing_confidence, success, duration_seconds, cost_estimate, "
    "actual_cost) VALUES (gen_random_uuid(), {}, 't', 'd', {}, 'small', 'p', 0.5, true, {}, 0, 0)"
)


def raw_insert(timestamp: str, duration: str, repo: str) -> str:
    return RAW_INSERT.format(timestamp, repo, duration)


@pytest.mark.parametrize("row", UNSTORABLE_ROWS)
async def test_the_table_refuses_what_the_models_refuse(db: LearningDatabase, row: str) -> None:
    async with db.connection() as connection:
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(raw_insert(*UNSTORABLE_ROWS[row]))
    with pytest.raises(IntegrityError) as raised:  # through the library: translated
        async with db.connection() as connection:
            await connection.execute(raw_insert(*UNSTORABLE_ROWS[row]))
    assert raised.value.sqlstate == "23514" and not raised.value.transient


async def test_rows_at_every_bound_never_break_a_refresh_or_an_answer(
    db: LearningDatabase,
) -> None:
    wide = "\U0001f600" * MAX_KEY_LENGTH  # 4 UTF-8 bytes each: the widest index entries
    extremes = {
        "duration_seconds": MAX_MEASURE, "cost_estimate": MAX_MEASURE,
        "actual_cost": MAX_MEASURE, "peak_memory_mb": MAX_MEASURE,
        "cpu_time_seconds": MAX_MEASURE, "repo": wide, "task_type": wide, "model_tier": wide,
        "pool_type": wide, "solution_summary": wide * 20, "quality_score": 100,
    }  # fmt: skip
    times = [
        datetime(1970, 1, 1, tzinfo=UTC),
        NOW - timedelta(days=3),
        NOW + MAX_CLOCK_SKEW - timedelta(minutes=1),
    ]
    rows = [record(timestamp=t, **extremes) for t in times for _ in range(50)]
    assert await db.store_executions(rows, embeddings=unit_vectors(len(rows))) == len(rows)
    results = await db.refresh_views()
    assert {r.status for r in results} <= {"success", "sealed"}, results
    for fresh, counted in ((True, len(rows)), (False, 100)):  # the views end at the watermark
        tiers = await db.get_tier_performance(repo=wide, days_back=1_000_000, fresh=fresh)
        assert sum(t["total_executions"] for t in tiers) == counted
        assert tiers[0]["avg_duration"] == pytest.approx(MAX_MEASURE)
        pools = await db.get_pool_performance(days_back=1_000_000, fresh=fresh)
        assert sum(p["total_tasks"] for p in pools) == counted
        patterns = await db.get_solution_patterns(min_usage=1, fresh=fresh)
        assert patterns[0]["usage_count"] == counted
    await db.cleanup_old_executions(days_to_keep=30, reclaim=False)  # the 1970 rows go
    assert sum(p["total_tasks"] for p in await db.get_pool_performance(days_back=400)) == 100


@pytest.mark.parametrize("days", [740_000, 999_999, 1_000_000])
async def test_a_window_longer_than_the_history_is_all_of_it(
    db: LearningDatabase, days: int
) -> None:
    rows = [record(timestamp=datetime(1970, 1, 2, tzinfo=UTC)), record()]
    await db.store_executions(rows, embeddings=unit_vectors(2))
    assert sum(t["total_executions"] for t in await db.get_tier_performance(days_back=days)) == 2
    assert sum(p["total_tasks"] for p in await db.get_pool_performance(days_back=days)) == 2
    similar = await db.find_similar_executions("Split the parser", days_back=days, threshold=-1)
    assert len(similar) == 2


@pytest.mark.parametrize("days", [-1, 1_000_001, 1.5, True, "30"])
async def test_a_window_outside_the_documented_range_is_refused(
    db: LearningDatabase, days: Any
) -> None:
    for call in (
        db.get_tier_performance(days_back=days),
        db.get_pool_performance(days_back=days),
        db.find_similar_executions("x", days_back=days),
    ):
        with pytest.raises(ArgumentError, match="days_back"):
            await call


@pytest.mark.parametrize("bad", ["a\ud800", "\udfff", "x\x00y"])
async def test_unencodable_text_is_refused_up_front_like_a_nul(
    db: LearningDatabase, bad: str
) -> None:
    with pytest.raises(ArgumentError, match="task_description"):
        await db.find_similar_executions(bad)
    with pytest.raises(ArgumentError, match="repo"):
        await db.find_similar_executions("Fix the login bug", repo=bad)
    for call in (db.get_tier_performance(repo=bad), db.get_pool_performance(repo=bad),
                 db.get_solution_patterns(repo=bad)):  # fmt: skip
        with pytest.raises(ArgumentError, match="repo"):
            await call
    assert isinstance(ArgumentError("x"), ValueError)


async def test_the_upgrade_moves_unstorable_rows_to_dead_letters(
    empty_database_url: str,
) -> None:
    await migrations.upgrade(empty_database_url, "0008")
    connection = await asyncpg.connect(empty_database_url)
    try:
        for timestamp, duration, repo in UNSTORABLE_ROWS.values():
            await connection.execute(raw_insert(timestamp, duration, repo))
        await connection.execute(raw_insert("now() - interval '1 day'", "1", "'kept'"))
        await connection.execute(
            'INSERT INTO feedback (feedback_id, task_id, "timestamp", feedback_type, rating) '
            "SELECT gen_random_uuid(), task_id, now(), 'rating', 4 FROM executions "
            "WHERE \"timestamp\" = '-infinity'"
        )
        await migrations.upgrade(empty_database_url)
        assert await connection.fetchval("SELECT array_agg(repo) FROM executions") == ["kept"]
        letters = await connection.fetch(
            "SELECT reason, events FROM telemetry_dead_letters ORDER BY id"
        )
        assert len(letters) == len(UNSTORABLE_ROWS)
        assert all(letter["reason"].startswith("revision 0009") for letter in letters)
        events = [e for letter in letters for e in _json(letter["events"])]
        assert {e["event_type"] for e in events} == {"orb_learning.execution_record"}
        assert sum(len(e["feedback"]) for e in events) == 1
        assert all("embedding" not in e["data"] for e in events)
    finally:
        await connection.close()
    async with LearningDatabase(empty_database_url, preload_model=False) as db:
        result = await db.cleanup_old_executions(days_to_keep=0, reclaim=False)
    assert result["deleted_count"] == 1  # retention works again


def _json(value: Any) -> Any:
    import json

    return json.loads(value) if isinstance(value, str) else value


def test_measures_are_bounded_so_that_sums_of_squares_stay_finite() -> None:
    squares = np.float64(MAX_MEASURE) ** 2 * 1e12  # a trillion rows at the bound
    assert np.isfinite(squares) and squares < np.finfo(np.float64).max / 1e200
