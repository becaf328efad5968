"""The live tail's index, measured in the same run as its baseline.

The migrated btree on ``timestamp`` against a BRIN index, on the heap as loaded (random
time order) and after ``CLUSTER ... USING`` the btree (time order, as an append-only
telemetry table would be). For each: fresh=True through the API; when the library's
statement reads the watermark by a sub-select, the what-if with the watermark passed as a
parameter (:func:`capture.tail_param`); BRIN as the only index the tail can use; the plans;
the index size. The btree is restored at the end; the table stays clustered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from orb_learning import LearningDatabase

from . import queries
from .capture import PARAM, Captured, tail_param
from .plans import scans
from .queries import key
from .timing import Call, Latency, round_robin

BTREE = "idx_executions_timestamp"
BRIN = "bench_executions_timestamp_brin"
CREATE_BTREE = f'CREATE INDEX {BTREE} ON executions ("timestamp")'  # as migrated
CREATE_BRIN = f'CREATE INDEX {BRIN} ON executions USING brin ("timestamp")'
BRIN_ONLY = "BRIN only"
TIMESTAMP_COMPOSITES = (
    "idx_executions_repo_task",
    "idx_executions_tier_success",
    "idx_executions_quality_trend",
)
"""The schema's composite indexes that end with ``timestamp``: PostgreSQL 18 can skip-scan
them for the tail when the btree on ``timestamp`` is gone, instead of using BRIN."""


@dataclass
class Variant:
    """One live-tail index on one physical order of the heap."""

    index: str
    heap_order: str
    index_bytes: int
    timestamp_correlation: float
    setup_seconds: dict[str, float]
    latencies: dict[str, Latency] = field(default_factory=dict)
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    loadavg: tuple[float, float] = (0.0, 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "heap_order": self.heap_order,
            "index_bytes": self.index_bytes,
            "timestamp_correlation": self.timestamp_correlation,
            "setup_seconds": self.setup_seconds,
            "latency_ms": {k: v.as_dict() for k, v in self.latencies.items()},
            "tail_scans": self.plans,
            "loadavg": list(self.loadavg),
        }


@dataclass(frozen=True)
class TailStatements:
    """Per method (all repos): the API's fresh=True statements, and the what-if's."""

    api: dict[str, Captured]
    param: dict[str, Captured | None]

    def best(self, method: str) -> Captured:
        """The statements that give the planner the tail's bound: the what-if's when the
        library reads the watermark by a sub-select, else the library's own."""
        return self.param[method] or self.api[method]


async def tail_statements(
    connection: asyncpg.Connection, captured: dict[str, Captured]
) -> TailStatements:
    api = {m: captured[key(m, "all", "fresh=True")] for m in queries.METHODS}
    param = {m: await tail_param(connection, api[m], m) for m in queries.METHODS}
    return TailStatements(api, param)


def _cases(
    db: LearningDatabase, connection: asyncpg.Connection, statements: TailStatements
) -> dict[str, Call]:
    cases: dict[str, Call] = {}
    for method in queries.METHODS:
        cases[key(method, "all", "fresh=True")] = queries.api_call(db, method, None, True)
        param = statements.param[method]
        if param is not None:
            cases[key(method, "all", PARAM)] = param.replay(connection)
    return cases


async def tail_scan(connection: asyncpg.Connection, captured: Captured) -> dict[str, Any]:
    """How a call's aggregate reads the base table (EXPLAIN ANALYZE): its first scan of it."""
    found = await scans(connection, captured.main.query, captured.main.args)
    tail = [s for s in found["scans"] if s["relation"] == "executions"]
    return tail[0] if tail else {"node": "none", "indexes": [], "rows": 0, "removed": 0, "ms": 0.0}


async def _plans(
    connection: asyncpg.Connection, statements: TailStatements
) -> dict[str, dict[str, Any]]:
    plans: dict[str, dict[str, Any]] = {}
    for method in queries.METHODS:
        plans[key(method, "all", "fresh=True")] = await tail_scan(
            connection, statements.api[method]
        )
        param = statements.param[method]
        if param is not None:
            plans[key(method, "all", PARAM)] = await tail_scan(connection, param)
    return plans


async def _timed(connection: asyncpg.Connection, *statements: str) -> float:
    started = time.perf_counter()
    for statement in statements:
        await connection.execute(statement)
    return time.perf_counter() - started


async def _variant(
    db: LearningDatabase,
    connection: asyncpg.Connection,
    statements: TailStatements,
    index: str,
    heap_order: str,
    setup: dict[str, float],
    *,
    calls: int,
    budget: float,
) -> Variant:
    await connection.execute("ANALYZE executions")
    variant = Variant(
        index=index,
        heap_order=heap_order,
        index_bytes=await connection.fetchval(
            "SELECT pg_relation_size($1::regclass)", BTREE if index == "btree" else BRIN
        ),
        timestamp_correlation=await connection.fetchval(
            "SELECT correlation FROM pg_stats WHERE tablename = 'executions' "
            "AND attname = 'timestamp' AND schemaname = current_schema()"
        ),
        setup_seconds=setup,
    )
    measured = await round_robin(
        _cases(db, connection, statements), calls=calls, budget_seconds=budget
    )
    variant.latencies = measured.latencies
    variant.loadavg = (measured.loadavg_before, measured.loadavg_after)
    variant.plans = await _plans(connection, statements)
    if index == "brin":
        await _brin_only(variant, connection, statements, calls=calls, budget=budget)
    return variant


async def _brin_only(
    variant: Variant,
    connection: asyncpg.Connection,
    statements: TailStatements,
    *,
    calls: int,
    budget: float,
) -> None:
    """The statements that expose the tail's bound, with BRIN as the only index on
    ``timestamp``: the composite indexes are dropped in a transaction rolled back after."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        for name in TIMESTAMP_COMPOSITES:
            await connection.execute(f"DROP INDEX {name}")
        cases: dict[str, Call] = {
            key(m, "all", BRIN_ONLY): statements.best(m).replay(connection) for m in queries.METHODS
        }
        measured = await round_robin(cases, calls=calls, budget_seconds=budget)
        variant.latencies.update(measured.latencies)
        for method in queries.METHODS:
            variant.plans[key(method, "all", BRIN_ONLY)] = await tail_scan(
                connection, statements.best(method)
            )
    finally:
        await transaction.rollback()


async def what_if_connection(url: str) -> asyncpg.Connection:
    """The connection of replayed statements: custom plans only, as the library's search
    forces them, so that a generic plan (blind to the tail's bound) is never reused."""
    connection: asyncpg.Connection = await asyncpg.connect(url)
    await connection.execute("SET plan_cache_mode = force_custom_plan")
    return connection


async def tail_index_experiment(
    db: LearningDatabase,
    url: str,
    captured: dict[str, Captured],
    *,
    calls: int,
    budget: float,
    log: Any,
) -> list[Variant]:
    connection = await what_if_connection(url)
    try:
        await connection.execute("SET maintenance_work_mem = '1GB'")
        statements = await tail_statements(connection, captured)

        async def variant(index: str, order: str, setup: dict[str, float]) -> Variant:
            log(f"  live tail: {index}, heap {order}")
            return await _variant(
                db, connection, statements, index, order, setup, calls=calls, budget=budget
            )

        results = [await variant("btree", "as loaded", {})]
        swap = await _timed(connection, f"DROP INDEX {BTREE}", CREATE_BRIN)
        results.append(await variant("brin", "as loaded", {"drop btree, create BRIN": swap}))
        log("  live tail: CLUSTER executions USING the btree")
        setup = {
            "drop BRIN, create btree": await _timed(connection, f"DROP INDEX {BRIN}", CREATE_BTREE),
            "CLUSTER": await _timed(connection, f"CLUSTER executions USING {BTREE}"),
        }
        results.append(await variant("btree", "clustered", setup))
        swap = await _timed(connection, f"DROP INDEX {BTREE}", CREATE_BRIN)
        results.append(await variant("brin", "clustered", {"drop btree, create BRIN": swap}))
        await _timed(connection, f"DROP INDEX {BRIN}", CREATE_BTREE, "ANALYZE executions")
        return results
    finally:
        await connection.close()
