"""The error model: real server errors come out as the library's classes, each saying whether
retrying can help, and the one retry helper retries exactly those."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from orb_learning import LearningDatabase
from orb_learning.errors import (
    ArgumentError,
    DatabaseError,
    DatabaseUnavailableError,
    DataError,
    InsufficientPrivilegeError,
    IntegrityError,
    OrbLearningError,
    QueryTimeoutError,
    SchemaNotReadyError,
    TransactionRetryError,
    is_transient,
    translate,
)
from orb_learning.retry import Backoff, Stopped, retry


async def raised_by(db: LearningDatabase, *statements: str) -> OrbLearningError:
    with pytest.raises(OrbLearningError) as raised:
        async with db.connection() as connection:
            for statement in statements:
                await connection.execute(statement)
    return raised.value


@pytest.mark.parametrize(
    ("statements", "kind", "sqlstate", "transient"),
    [
        (["SELECT 1 / 0"], DataError, "22012", False),
        (["SELECT 'x'::int"], DataError, "22P02", False),
        (["UPDATE executions SET routing_confidence = 2"], None, None, False),  # no rows: ok
        (["INSERT INTO feedback (feedback_id, task_id, \"timestamp\", feedback_type, rating) "
          "VALUES (gen_random_uuid(), gen_random_uuid(), now(), 'r', 3)"],
         IntegrityError, "23503", False),
        (["SET statement_timeout = 50", "SELECT pg_sleep(2)"], QueryTimeoutError, "57014", True),
        (["SELECT pg_terminate_backend(pg_backend_pid())"], DatabaseUnavailableError, None, True),
        (["SELECT * FROM no_such_table"], DatabaseError, "42P01", False),
    ],
)  # fmt: skip
async def test_server_errors_are_classified(
    db: LearningDatabase,
    statements: list[str],
    kind: type[OrbLearningError] | None,
    sqlstate: str | None,
    transient: bool,
) -> None:
    if kind is None:
        async with db.connection() as connection:
            for statement in statements:
                await connection.execute(statement)
        return
    error = await raised_by(db, *statements)
    assert type(error) is kind, repr(error)
    assert error.transient is transient and is_transient(error) is transient
    if sqlstate is not None:
        assert getattr(error, "sqlstate", None) == sqlstate
    assert isinstance(error.__cause__, asyncpg.PostgresError | asyncpg.InterfaceError | OSError)


async def test_a_missing_privilege_is_its_own_class(db: LearningDatabase) -> None:
    async with db.connection() as connection:
        await connection.execute("DROP ROLE IF EXISTS orb_test_nobody")
        await connection.execute("CREATE ROLE orb_test_nobody NOLOGIN")
    try:
        error = await raised_by(
            db, "BEGIN", "SET LOCAL ROLE orb_test_nobody", "SELECT * FROM executions"
        )
        assert type(error) is InsufficientPrivilegeError and not error.transient
        assert error.sqlstate == "42501"  # type: ignore[attr-defined]
    finally:
        async with db.connection() as connection:
            await connection.execute("DROP ROLE orb_test_nobody")


async def test_a_deadlock_is_a_transaction_to_run_again(
    db: LearningDatabase, database_url: str
) -> None:
    """Two transactions locking two rows in opposite orders: the server picks a victim."""
    await db.store_executions(
        [
            {"task_id": f"00000000-0000-4000-8000-00000000000{i}", "task_type": "t",
             "task_description": "d", "repo": "r", "model_tier": "m", "pool_type": "p",
             "routing_confidence": 0.5, "success": True, "duration_seconds": 1.0,
             "cost_estimate": 0.0, "actual_cost": 0.0}
            for i in (1, 2)
        ]
    )  # fmt: skip
    update = "UPDATE executions SET success = NOT success WHERE task_id = '{}'"
    ids = ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002")
    other = await asyncpg.connect(database_url)
    try:
        async with db.connection() as mine:
            both_locked = asyncio.Barrier(2)

            async def cross(connection: asyncpg.Connection, first: str, second: str) -> None:
                async with connection.transaction():
                    await connection.execute(update.format(first))
                    await both_locked.wait()
                    await connection.execute(update.format(second))

            results = await asyncio.gather(
                cross(mine, *ids), cross(other, *reversed(ids)), return_exceptions=True
            )
    finally:
        await other.close()
    errors = [translate(r) for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and type(errors[0]) is TransactionRetryError
    assert errors[0].transient


def test_argument_errors_are_value_errors_and_never_transient() -> None:
    error = ArgumentError("limit must be >= 1, got 0")
    assert isinstance(error, ValueError) and isinstance(error, OrbLearningError)
    assert not error.transient and not is_transient(ValueError("plain"))
    assert not SchemaNotReadyError("x").transient


def test_errors_say_when_the_data_itself_was_refused() -> None:
    refused = [
        ArgumentError("x"),
        DataError("x", sqlstate="22003"),
        IntegrityError("x", sqlstate="23514"),
        translate(asyncpg.ProgramLimitExceededError("index row size exceeds maximum")),
    ]
    assert all(e.rejects_input and not e.transient for e in refused)  # fmt: skip
    not_the_data = [
        SchemaNotReadyError("x"),
        InsufficientPrivilegeError("x"),
        DatabaseUnavailableError("x"),
        QueryTimeoutError("x"),
    ]
    assert not any(e.rejects_input for e in not_the_data)  # fmt: skip


async def test_retry_retries_transient_errors_only() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DatabaseUnavailableError("away")
        return "ok"

    assert await retry(flaky, backoff=Backoff(initial=0.01), what="flaky") == "ok"
    assert len(calls) == 3

    async def wrong() -> None:
        calls.append(1)
        raise DataError("bad value", sqlstate="22003")

    calls.clear()
    with pytest.raises(DataError):
        await retry(wrong, backoff=Backoff(initial=0.01), what="wrong")
    assert len(calls) == 1

    async def away() -> None:
        raise QueryTimeoutError("slow")

    with pytest.raises(QueryTimeoutError):
        await retry(away, backoff=Backoff(initial=0.01), what="away", attempts=3)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    with pytest.raises(Stopped):
        await retry(away, backoff=Backoff(initial=10.0, maximum=10.0), what="away", stop=stop)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    policy = Backoff(initial=0.1, maximum=2.0, jitter=0.25)
    delays = [policy.delay(n) for n in range(10)]
    assert 0.075 <= delays[0] <= 0.1 and all(1.5 <= d <= 2.0 for d in delays[5:])
    assert Backoff(jitter=0.0).delay(1000) == 5.0
    with pytest.raises(ValueError):
        Backoff(initial=0)
