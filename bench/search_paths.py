"""The exact path against the HNSW path, by the rows a filter lets through: where the
library's ``exact_search_max_rows`` should sit (see :mod:`orb_learning._search`)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import asyncpg
import numpy as np

from orb_learning import _search as search
from orb_learning._search import SearchTuning

from .search_cases import open_db

TARGETS = (500, 1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 100_000)
"""Rows passing the filter that the measured filters come closest to."""
WINDOWS = (None, 365, 180, 90, 30, 14, 7, 3, 1)
COUNTS = """
SELECT repo, count(*) FILTER (WHERE "timestamp" >= now() - make_interval(hours => 24 * $1))
FROM executions WHERE embedding IS NOT NULL GROUP BY repo"""
FORCED = {"exact": 10**12, "hnsw": -1}
"""exact_search_max_rows forcing each path."""


async def filters(connection: asyncpg.Connection) -> list[dict[str, Any]]:
    """(repo, days_back) pairs whose row counts come closest to each of TARGETS."""
    found: list[dict[str, Any]] = []
    for days in WINDOWS:
        for repo, count in await connection.fetch(COUNTS, days or 100_000):
            found.append({"repo": repo, "days_back": days, "rows": count})
    chosen: dict[tuple[str, int | None], dict[str, Any]] = {}
    for target in TARGETS:
        best = min(found, key=lambda f: abs(np.log(max(f["rows"], 1) / target)))
        if 0.5 <= best["rows"] / target <= 2:
            chosen[(best["repo"], best["days_back"])] = best
    return sorted(chosen.values(), key=lambda f: f["rows"])


async def measure(
    url: str, names: list[str], queries: np.ndarray, *, calls: int
) -> list[dict[str, Any]]:
    """Per filter: p50 of each path forced, and the HNSW path's recall@10 against exact."""
    connection = await asyncpg.connect(url)
    try:
        points = await filters(connection)
    finally:
        await connection.close()
    library, calls = SearchTuning(), max(calls, len(names))
    for point in points:
        answers: dict[str, list[set[str]]] = {}
        for path, threshold in FORCED.items():
            tuning = SearchTuning(exact_search_max_rows=threshold)
            async with open_db(url, queries, tuning) as db:
                answers[path], point[f"{path}_p50_ms"] = await _timed(db, point, names, calls)
        hits = sum(len(h & e) for h, e in zip(answers["hnsw"], answers["exact"], strict=True))
        point["hnsw_recall"] = hits / max(sum(len(e) for e in answers["exact"]), 1)
        async with open_db(url, queries) as db, db.connection() as c:
            point["estimate"] = await _estimate(c, point)
            point["exact_max_rows"] = search.exact_max_rows(
                library, await search.PlannerEstimates().table_rows(c)
            )
        point["library_path"] = "exact" if point["estimate"] <= point["exact_max_rows"] else "hnsw"
    return points


async def _timed(
    db: Any, point: dict[str, Any], names: list[str], calls: int
) -> tuple[list[set[str]], float]:
    answers, times = [], []
    for i in range(calls + 5):  # 5 warm-up calls
        name = names[i % len(names)]
        started = time.perf_counter()
        rows = await db.find_similar_executions(
            name, repo=point["repo"], days_back=point["days_back"], limit=10, threshold=-1.0
        )
        if i >= 5:
            times.append((time.perf_counter() - started) * 1000)
        if 5 <= i < 5 + len(names):
            answers.append({str(r["task_id"]) for r in rows})
    return answers, statistics.median(times)


async def _estimate(connection: asyncpg.Connection, point: dict[str, Any]) -> float:
    estimates = search.PlannerEstimates()
    return await estimates.passing_rows(connection, point["days_back"], point["repo"])
