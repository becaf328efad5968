"""What is measured at one level: the refresh job, the API's latencies, the direct
aggregates, their agreement, and the sizes (plans: :mod:`plans`, plan cache:
:mod:`plancache`, index experiments: :mod:`indexes`)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from orb_learning import LearningDatabase
from orb_learning._catalog import CURRENT_VIEWS

from . import queries
from .capture import Captured
from .queries import CUSTOM, SCOPES, key
from .timing import Call, Measured, round_robin

# -- the refresh job ---------------------------------------------------------------------


@dataclass
class RefreshFigures:
    """Seconds per view from the routine's own rows (finished_at - started_at)."""

    initial: dict[str, float]
    initial_wall: float
    runs: list[dict[str, float]] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    view_rows: dict[str, int] = field(default_factory=dict)
    initial_rows: dict[str, int] = field(default_factory=dict)

    def median(self, view: str) -> float:
        return statistics.median(run[view] for run in self.runs)

    @property
    def periodic_views(self) -> list[str]:
        """The parts each periodic refresh refreshed (the recent ones; history is sealed)."""
        return list(self.runs[0]) if self.runs else []

    @property
    def median_wall(self) -> float:
        return statistics.median(self.walls)

    def as_dict(self) -> dict[str, Any]:
        views = list(self.initial)
        return {
            "initial_seconds": self.initial,
            "initial_wall_seconds": self.initial_wall,
            "runs_seconds": self.runs,
            "run_wall_seconds": self.walls,
            "median_seconds": {v: self.median(v) for v in views if v in self.periodic_views},
            "median_wall_seconds": self.median_wall,
            "view_rows": {**self.initial_rows, **self.view_rows},
        }


async def _refresh_once(
    connection: asyncpg.Connection,
) -> tuple[dict[str, float], float, dict[str, int]]:
    started = time.perf_counter()
    rows = await connection.fetch("SELECT * FROM orb_learning_refresh_views()")
    wall = time.perf_counter() - started
    failed = [r for r in rows if r["status"] not in ("success", "sealed")]
    if failed:
        raise RuntimeError(f"refresh did not succeed: {[dict(r) for r in failed]}")
    rows = [r for r in rows if r["status"] == "success"]  # a sealed history is left alone
    seconds = {r["view_name"]: (r["finished_at"] - r["started_at"]).total_seconds() for r in rows}
    return seconds, wall, {r["view_name"]: r["rows"] for r in rows}


async def refresh_job(url: str, runs: int) -> RefreshFigures:
    """The first refresh after the load (fills the views), then ``runs`` more, as the
    refresher's periodic ticks do (each recomputes the views and applies the diff)."""
    connection = await asyncpg.connect(url)
    try:
        initial, wall, initial_rows = await _refresh_once(connection)
        figures = RefreshFigures(initial=initial, initial_wall=wall, initial_rows=initial_rows)
        for _ in range(runs):
            seconds, wall, rows = await _refresh_once(connection)
            figures.runs.append(seconds)
            figures.walls.append(wall)
            figures.view_rows = rows
        return figures
    finally:
        await connection.close()


async def live_tail_rows(connection: asyncpg.Connection) -> dict[str, int]:
    """Rows at or after each view's watermark: what fresh=True aggregates live."""
    rows = await connection.fetch(
        """SELECT w.view_name,
                  (SELECT count(*) FROM executions e WHERE e."timestamp" >= w.watermark) AS n
           FROM view_watermarks w WHERE w.view_name LIKE '%\\_recent\\_mv'
           ORDER BY w.view_name"""
    )
    return {r["view_name"]: r["n"] for r in rows}


# -- latencies ---------------------------------------------------------------------------


def api_cases(
    db: LearningDatabase, custom: asyncpg.Connection, captured: dict[str, Captured]
) -> dict[str, Call]:
    """The API's twelve cases, plus its fresh=True statements replayed on ``custom``, a
    connection that never uses a generic plan: the difference is the plan cache's doing."""
    cases: dict[str, Call] = {}
    for method in queries.METHODS:
        for scope, repo in SCOPES.items():
            for fresh in (False, True):
                cases[key(method, scope, f"fresh={fresh}")] = queries.api_call(
                    db, method, repo, fresh
                )
            fresh_true = captured[key(method, scope, "fresh=True")]
            cases[key(method, scope, CUSTOM)] = fresh_true.replay(custom)
    return cases


def direct_cases(connection: asyncpg.Connection) -> dict[str, Call]:
    return {
        key(method, scope, "direct"): queries.direct_call(connection, method, repo)
        for method in queries.METHODS
        for scope, repo in SCOPES.items()
    }


async def measure_api(
    db: LearningDatabase,
    url: str,
    captured: dict[str, Captured],
    *,
    calls: int,
    budget: float,
) -> Measured:
    custom = await asyncpg.connect(url)
    try:
        await custom.execute("SET plan_cache_mode = force_custom_plan")
        cases = api_cases(db, custom, captured)
        return await round_robin(cases, calls=calls, budget_seconds=budget)
    finally:
        await custom.close()


async def measure_direct(connection: asyncpg.Connection, *, calls: int) -> Measured:
    return await round_robin(
        direct_cases(connection), calls=calls, warmup=3, budget_seconds=0, min_calls=calls
    )


# -- agreement: the API answers what the base table answers --------------------------------


def _counts(method: str, rows: list[Any]) -> list[tuple[Any, ...]]:
    if method == "tier":
        return sorted((r["model_tier"], r["task_type"], r["total_executions"]) for r in rows)
    if method == "pool":
        return sorted((r["pool_type"], r["total_tasks"]) for r in rows)
    return [(r["solution_summary"], r["usage_count"]) for r in rows]


async def agreement(db: LearningDatabase, connection: asyncpg.Connection) -> dict[str, Any]:
    """Per method and scope: do fresh=True and fresh=False count what the base table does?"""
    result: dict[str, Any] = {}
    for method in queries.METHODS:
        for scope, repo in SCOPES.items():
            direct = _counts(method, await queries.direct_call(connection, method, repo)())
            fresh = _counts(method, await queries.api_call(db, method, repo, True)())
            views = _counts(method, await queries.api_call(db, method, repo, False)())
            result[f"{method}/{scope}"] = {
                "fresh_true_equals_direct": fresh == direct,
                "fresh_false_equals_direct": views == direct,
                "direct_rows_counted": sum(row[-1] for row in direct),
                "fresh_false_rows_counted": sum(row[-1] for row in views),
            }
    return result


# -- sizes -------------------------------------------------------------------------------


async def sizes(connection: asyncpg.Connection) -> dict[str, Any]:
    rows = await connection.fetchval("SELECT count(*) FROM executions")
    table = await connection.fetchrow(
        """SELECT pg_relation_size('executions') AS heap,
                  pg_table_size('executions') - pg_relation_size('executions') AS toast_and_maps,
                  pg_indexes_size('executions') AS indexes,
                  pg_total_relation_size('executions') AS total"""
    )
    indexes = await connection.fetch(
        """SELECT c.relname AS name, am.amname AS method, pg_relation_size(c.oid) AS bytes
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_am am ON am.oid = c.relam
           WHERE i.indrelid = 'executions'::regclass ORDER BY c.relname"""
    )
    views: dict[str, Any] = {}
    for view in (v.name for v in CURRENT_VIEWS):  # the materialized parts (0007)
        views[view] = {
            "rows": await connection.fetchval(f"SELECT count(*) FROM {view}"),
            "heap": await connection.fetchval("SELECT pg_relation_size($1::regclass)", view),
            "total": await connection.fetchval("SELECT pg_total_relation_size($1::regclass)", view),
        }
    return {
        "rows": rows,
        "table": dict(table),
        "bytes_per_row": {k: v / rows for k, v in dict(table).items()},
        "indexes": {
            r["name"]: {"method": r["method"], "bytes": r["bytes"], "per_row": r["bytes"] / rows}
            for r in indexes
        },
        "views": views,
    }
