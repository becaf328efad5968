"""The sealed history (revision 0007): what the daily seal advance costs, what a late row
before the seal costs at the next refresh, and what the statement-level triggers that spot
such rows cost the batch path.

The seal advance is staged as it happens once a day: the history parts are rebuilt one day
short of the current seal (untimed), so that the timed refresh moves the seal by one day,
exactly as the first refresh after midnight UTC does.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from orb_learning._catalog import PUBLIC_VIEWS

from . import data

_HISTORY = [view.history.name for view in PUBLIC_VIEWS]
_RECENT = [view.recent.name for view in PUBLIC_VIEWS]


async def _timed_refresh(connection: asyncpg.Connection) -> dict[str, Any]:
    started = time.perf_counter()
    rows = await connection.fetch("SELECT * FROM orb_learning_refresh_views()")
    wall = time.perf_counter() - started
    bad = [dict(r) for r in rows if r["status"] not in ("success", "sealed")]
    if bad:
        raise RuntimeError(f"refresh did not succeed: {bad}")
    return {
        "wall_seconds": wall,
        "seconds": {
            r["view_name"]: (r["finished_at"] - r["started_at"]).total_seconds()
            for r in rows
            if r["status"] == "success"
        },
        "rows": {r["view_name"]: r["rows"] for r in rows if r["status"] == "success"},
    }


async def _one_day_short(connection: asyncpg.Connection) -> None:
    """Rebuild the history parts with their seal a day earlier (and the recent parts from
    there), as they stood before the last midnight UTC."""
    await connection.execute(
        "UPDATE view_watermarks SET watermark = watermark - interval '1 day' "
        "WHERE view_name = ANY($1::text[])",
        _HISTORY,
    )
    for name in (*_HISTORY, *_RECENT):  # each rollup's parts after its source's
        await connection.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {name}")
    await connection.execute("DELETE FROM view_history_dirty")


async def seal_advance(url: str, runs: int) -> dict[str, Any]:
    """``runs`` timed refreshes that each move the seal by one day."""
    connection = await asyncpg.connect(url)
    try:
        results = []
        for _ in range(runs):
            await _one_day_short(connection)
            results.append(await _timed_refresh(connection))
        late = await late_row(connection)
    finally:
        await connection.close()
    walls = [r["wall_seconds"] for r in results]
    views = list(results[0]["seconds"])
    return {
        "runs": results,
        "median_wall_seconds": statistics.median(walls),
        "median_seconds": {v: statistics.median(r["seconds"][v] for r in results) for v in views},
        "late_row": late,
    }


async def late_row(connection: asyncpg.Connection) -> dict[str, Any]:
    """One row stamped 30 days back, written after the refresh: the trigger marks the
    history dirty and the next refresh rebuilds it (timed)."""
    await connection.execute(
        'INSERT INTO executions (task_id, "timestamp", task_type, task_description, repo, '
        "model_tier, pool_type, routing_confidence, success, duration_seconds, cost_estimate, "
        "actual_cost, solution_summary) SELECT gen_random_uuid(), now() - interval '30 days', "
        "task_type, task_description, repo, model_tier, pool_type, routing_confidence, "
        "success, duration_seconds, cost_estimate, actual_cost, solution_summary "
        "FROM executions LIMIT 1"
    )
    marked = await connection.fetchval("SELECT count(*) FROM view_history_dirty")
    refreshed = await _timed_refresh(connection)
    left = await connection.fetchval("SELECT count(*) FROM view_history_dirty")
    return {"marked": marked, "left_after_refresh": left, **refreshed}


TRIGGERS = ("orb_learning_history_insert", "orb_learning_history_update")


async def trigger_cost(url: str, *, batches: int, size: int, seed: int) -> dict[str, Any]:
    """``store_executions`` of ``size`` rows, with and without the triggers (ALTER TABLE
    ... DISABLE TRIGGER between batches), interleaved; rows stamped within the last hour
    (after every seal: the trigger's aggregate only) and 10 days back (the trigger also
    marks the history dirty)."""
    admin = await asyncpg.connect(url)
    seconds: dict[str, list[float]] = {}
    rng = np.random.default_rng(seed)
    vectors = data.VectorSource(rng)
    try:
        async with data.open_database(url) as db:
            for number in range(batches):
                for case, back, enabled in (
                    ("recent rows, triggers", timedelta(hours=1), True),
                    ("recent rows, no triggers", timedelta(hours=1), False),
                    ("rows 10 days back, triggers", timedelta(days=10), True),
                    ("rows 10 days back, no triggers", timedelta(days=10), False),
                ):
                    action = "ENABLE" if enabled else "DISABLE"
                    for trigger in TRIGGERS:
                        await admin.execute(f"ALTER TABLE executions {action} TRIGGER {trigger}")
                    end = datetime.now(UTC) - back
                    records, _ = data.tail_records(size, seed=seed * 1_000 + number)
                    records = [
                        r.model_copy(update={"timestamp": end - timedelta(seconds=i)})
                        for i, r in enumerate(records)
                    ]
                    started = time.perf_counter()
                    await db.store_executions(records, embeddings=vectors.take(size))
                    seconds.setdefault(case, []).append(time.perf_counter() - started)
    finally:
        for trigger in TRIGGERS:
            await admin.execute(f"ALTER TABLE executions ENABLE TRIGGER {trigger}")
        await admin.close()
    return {
        "batch": size,
        "batches": batches,
        "seconds": seconds,
        "median_ms": {case: statistics.median(s) * 1000 for case, s in seconds.items()},
    }
