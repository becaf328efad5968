"""An index on each view's time bucket (``tier_performance_mv(date)``,
``pool_performance_mv(hour)``), measured with and without, back to back.

A schema that has such indexes (revision 0004 of the library) is measured as migrated, then
without them (dropped and recreated afterwards); an older schema is measured as it is, then
with indexes the benchmark creates and drops. Either way the schema ends as migrated.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import asyncpg

from orb_learning import LearningDatabase

from . import queries
from .capture import PARAM, Captured
from .indexes import TailStatements, tail_statements, what_if_connection
from .plans import describe, scans
from .queries import key
from .timing import Call, Latency, round_robin

TIME_COLUMNS = {"tier_performance_mv": "date", "pool_performance_mv": "hour"}
WINDOW_START = "date_trunc('day', now() - make_interval(hours => 24 * 30), 'UTC')"
BOUND_VARIANTS = {
    "window start in the filter": f"date >= {WINDOW_START}",
    "window start computed once (sub-select)": f"date >= (SELECT {WINDOW_START})",
}


@dataclass
class ViewIndexes:
    in_schema: bool
    with_ms: dict[str, Latency]
    without_ms: dict[str, Latency]
    index_bytes: dict[str, int]
    view_scans: dict[str, dict[str, str]]
    window_bound_ms: dict[str, float] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "in_schema": self.in_schema,
            "order": "with, then without" if self.in_schema else "without, then with",
            "with_ms": {k: v.as_dict() for k, v in self.with_ms.items()},
            "without_ms": {k: v.as_dict() for k, v in self.without_ms.items()},
            "index_bytes": self.index_bytes,
            "view_scans": self.view_scans,
            "window_bound_ms": self.window_bound_ms,
        }


async def _existing(connection: asyncpg.Connection) -> dict[str, tuple[str, str]]:
    """Single-column indexes on a view's time bucket: view -> (name, definition)."""
    rows = await connection.fetch(
        """SELECT c.relname AS view, i.relname AS name, a.attname AS column,
                  pg_get_indexdef(i.oid) AS definition
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_class c ON c.oid = x.indrelid
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
           WHERE c.relname = ANY($1::text[]) AND x.indnatts = 1""",
        list(TIME_COLUMNS),
    )
    return {
        r["view"]: (r["name"], r["definition"])
        for r in rows
        if TIME_COLUMNS[r["view"]] == r["column"]
    }


def _cases(
    db: LearningDatabase, connection: asyncpg.Connection, statements: TailStatements
) -> dict[str, Call]:
    cases: dict[str, Call] = {}
    for method in ("tier", "pool"):
        for fresh in (False, True):
            cases[key(method, "all", f"fresh={fresh}")] = queries.api_call(db, method, None, fresh)
        param = statements.param[method]
        if param is not None:
            cases[key(method, "all", PARAM)] = param.replay(connection)
    return cases


async def _view_scans(
    connection: asyncpg.Connection, captured: dict[str, Captured]
) -> dict[str, str]:
    result = {}
    for method in ("tier", "pool"):
        main = captured[key(method, "all", "fresh=False")].main
        found = await scans(connection, main.query, main.args)
        result[method] = "; ".join(describe(s) for s in found["scans"])
    return result


async def _window_bound_cost(connection: asyncpg.Connection, runs: int = 5) -> dict[str, float]:
    """Median EXPLAIN ANALYZE ms of a 30-day count over tier_performance_mv, with the
    window's start (a stable expression) in the filter, evaluated for every row of a
    sequential scan, or computed once by a sub-select."""
    result: dict[str, float] = {}
    for name, condition in BOUND_VARIANTS.items():
        sql = f"SELECT count(*) FROM tier_performance_mv WHERE {condition}"
        times = [(await scans(connection, sql, ()))["execution_ms"] for _ in range(runs)]
        result[name] = statistics.median(times)
    return result


async def _analyze(connection: asyncpg.Connection) -> None:
    await connection.execute(f"ANALYZE {', '.join(TIME_COLUMNS)}")


async def view_index_experiment(
    db: LearningDatabase, url: str, captured: dict[str, Captured], *, calls: int, budget: float
) -> ViewIndexes:
    connection = await what_if_connection(url)
    try:
        statements = await tail_statements(connection, captured)
        cases = _cases(db, connection, statements)
        existing = await _existing(connection)
        in_schema = len(existing) == len(TIME_COLUMNS)
        bound_in_statement = "date_trunc(" in captured[key("tier", "all", "fresh=False")].main.query
        scans_by_state: dict[str, dict[str, str]] = {}

        async def measure(state: str) -> dict[str, Latency]:
            scans_by_state[state] = await _view_scans(connection, captured)
            return (await round_robin(cases, calls=calls, budget_seconds=budget)).latencies

        if in_schema:
            with_ms = await measure("with")
            sizes = {name: await _size(connection, name) for name, _ in existing.values()}
            for name, _ in existing.values():
                await connection.execute(f"DROP INDEX {name}")
            await _analyze(connection)
            without_ms = await measure("without")
            bound = await _window_bound_cost(connection) if bound_in_statement else None
            for _, definition in existing.values():
                await connection.execute(definition)
        else:
            without_ms = await measure("without")
            bound = await _window_bound_cost(connection) if bound_in_statement else None
            names = {f"bench_{view}_{column}": view for view, column in TIME_COLUMNS.items()}
            for name, view in names.items():
                await connection.execute(f"CREATE INDEX {name} ON {view} ({TIME_COLUMNS[view]})")
            await _analyze(connection)
            with_ms = await measure("with")
            sizes = {name: await _size(connection, name) for name in names}
            for name in names:
                await connection.execute(f"DROP INDEX {name}")
        await _analyze(connection)
        return ViewIndexes(in_schema, with_ms, without_ms, sizes, scans_by_state, bound)
    finally:
        await connection.close()


async def _size(connection: asyncpg.Connection, index: str) -> int:
    size: int = await connection.fetchval("SELECT pg_relation_size($1::regclass)", index)
    return size
