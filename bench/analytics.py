"""The analytics and the view refresh job at one level.

* **The refresh** (``orb_learning_refresh_views()``, the client's wall time): the first
  after the load (fills the views, seals the history), then the periodic one (revision 0007:
  the recent parts only, two to three days of executions), median of ``refresh_runs``.
* **The calls**: ``get_tier_performance(days_back=30)``, ``get_pool_performance(days_back=7)``
  and ``get_solution_patterns(min_usage=5, limit=10)`` over all repos, ``fresh=False`` (the
  views alone) and ``fresh=True`` (plus the live tail: 0.1% of the rows stamped within the
  last minute), against the same aggregate by GROUP BY on ``executions`` (the baseline),
  all in the same rounds with the machine reference.
* **The daily seal advance**: staged as at the first refresh after midnight UTC (the
  history parts rebuilt a day short of the seal, untimed), then one timed refresh.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from .data import Level, open_db
from .timing import Reference, latency, log, rounds

DIRECT = {
    "tier": """SELECT model_tier, task_type, count(*), count(*) FILTER (WHERE success),
       (count(*) FILTER (WHERE success))::float8 / count(*), avg(duration_seconds),
       avg(actual_cost), avg(quality_score)::float8 FROM executions
WHERE "timestamp" >= date_trunc('day', now() - make_interval(hours => 24 * 30), 'UTC')
GROUP BY model_tier, task_type ORDER BY model_tier, task_type""",
    "pool": """SELECT pool_type, count(*), count(*) FILTER (WHERE success),
       (count(*) FILTER (WHERE success))::float8 / count(*), avg(duration_seconds),
       avg(actual_cost) FROM executions
WHERE "timestamp" >= date_trunc('hour', now() - make_interval(hours => 24 * 7), 'UTC')
GROUP BY pool_type ORDER BY pool_type""",
    "patterns": """SELECT solution_summary, count(*) AS usage, count(*) FILTER (WHERE success),
       (count(*) FILTER (WHERE success))::float8 / count(*) AS rate,
       avg(quality_score)::float8, array_agg(DISTINCT repo ORDER BY repo),
       array_agg(DISTINCT task_type ORDER BY task_type), min("timestamp"), max("timestamp")
FROM executions WHERE solution_summary IS NOT NULL GROUP BY solution_summary
HAVING count(*) >= 5 ORDER BY rate DESC, usage DESC, solution_summary LIMIT 10""",
}
"""The plain GROUP BY a service would run without the views, over the API's windows."""
CALLS = {
    "tier": "get_tier_performance(days_back=30)",
    "pool": "get_pool_performance(days_back=7)",
    "patterns": "get_solution_patterns(min_usage=5, limit=10)",
}


@dataclass(frozen=True)
class Parameters:
    calls: int = 200
    budget: float = 10.0
    refresh_runs: int = 3
    tail_share: float = 0.001


QUICK = Parameters(calls=30, budget=2.0, refresh_runs=1)


async def refresh(connection: asyncpg.Connection) -> tuple[float, list[str]]:
    """One ``orb_learning_refresh_views()``: its wall time, and the parts in its order."""
    started = time.perf_counter()
    rows = await connection.fetch("SELECT * FROM orb_learning_refresh_views()", timeout=86_400)
    seconds = time.perf_counter() - started
    failed = [dict(r) for r in rows if r["status"] not in ("success", "sealed")]
    if failed:
        raise RuntimeError(f"refresh did not succeed: {failed}")
    return seconds, [r["view_name"] for r in rows]


async def seal_advance(connection: asyncpg.Connection, parts: list[str]) -> float:
    """Rebuild the history parts with their seal a day earlier (and the recent parts from
    there), as they stood before the last midnight UTC; then time the refresh that moves
    the seal by that day."""
    history = [p for p in parts if p.endswith("_history_mv")]
    recent = [p for p in parts if p.endswith("_recent_mv")]
    await connection.execute(
        "UPDATE view_watermarks SET watermark = watermark - interval "
        "'1 day' WHERE view_name = ANY($1::text[])",
        history,
    )
    for name in (*history, *recent):  # each rollup's part after its source's, as refreshed
        await connection.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {name}", timeout=86_400)
    await connection.execute("DELETE FROM view_history_dirty")
    return (await refresh(connection))[0]


def api_call(db: Any, method: str, fresh: bool) -> Any:
    if method == "tier":
        return lambda: db.get_tier_performance(days_back=30, fresh=fresh)
    if method == "pool":
        return lambda: db.get_pool_performance(days_back=7, fresh=fresh)
    return lambda: db.get_solution_patterns(min_usage=5, limit=10, fresh=fresh)


async def measure(level: Level, reference: Reference, p: Parameters) -> dict[str, Any]:
    """The refresh, the live tail, the calls against the direct aggregate, the seal."""
    tag = f"[{level.rows:,}]"
    connection = await asyncpg.connect(level.url)
    try:
        log(f"{tag} analytics: the first refresh, then {p.refresh_runs} periodic ones")
        first, parts = await refresh(connection)
        periodic = [(await refresh(connection))[0] for _ in range(p.refresh_runs)]
        after_refresh = await reference.burst()
        # As autovacuum does within a minute of the first refresh: plans with statistics.
        await connection.execute(f"ANALYZE {', '.join(parts)}")
        tail = max(1, round(level.rows * p.tail_share))
        async with open_db(level.url, level.queries) as db:
            records, vectors = level.generator.live_tail(tail)
            await db.store_executions(records, embeddings=vectors)
            log(f"{tag} analytics: the calls, fresh=False / fresh=True / direct GROUP BY")
            cases = {f"{m}/fresh={f}": api_call(db, m, f) for m in CALLS for f in (False, True)}
            cases |= {
                f"{m}/direct": (lambda sql=sql: connection.fetch(sql)) for m, sql in DIRECT.items()
            }
            calls = await rounds(cases, reference, calls=p.calls, budget=p.budget)
        log(f"{tag} analytics: {p.refresh_runs} staged seal advances")
        seals = [await seal_advance(connection, parts) for _ in range(p.refresh_runs)]
        after_seals = await reference.burst()
    finally:
        await connection.close()
    return {
        "rows": level.rows,
        "live_tail_rows": tail,
        "refresh": {
            "first_seconds": round(first, 3),
            "periodic_seconds": [round(s, 3) for s in periodic],
            "periodic_median_seconds": round(statistics.median(periodic), 3),
            "seal_advance_seconds": [round(s, 3) for s in seals],
            "seal_advance_median_seconds": round(statistics.median(seals), 3),
            "reference": latency([after_refresh["p50"], after_seals["p50"]]),
        },
        **calls,
    }
