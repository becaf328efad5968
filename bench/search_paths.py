"""The two figures that set the search's defaults (see ``orb_learning._search``).

* **The paths by rows passing the filter**: (repo, ``days_back``) filters letting about 500
  to 100,000 rows through, each searched with the exact path forced and with the HNSW path
  forced (``exact_search_max_rows`` huge, then 0), in the same rounds: where the two cost the
  same is where the library's rule (14 x the square root of the table's rows, at least
  1,000) should put ``exact_search_max_rows``.
* **The ef_search sweep**: the public ``ef_search`` setting at a few values around the
  default, recall@10 and p50 of the two HNSW cases, to see that the default sits where
  recall stops paying for time.
* **The sample check** (decision 0007): the search function with the HNSW answer checked
  against the row sample and without (``check_sample_rows=0``), in the same rounds.
"""

from __future__ import annotations

import itertools
from typing import Any

import asyncpg
import numpy as np

from orb_learning import _search as search

from .data import CASES, Level, open_db
from .timing import Reference, rounds

TARGETS = (500, 1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 100_000)
"""Rows passing the filter that the chosen filters come closest to."""
WINDOWS = (None, 365, 180, 90, 30, 14, 7, 3, 1)
COUNTS = """SELECT repo, count(*) FILTER (WHERE "timestamp" >= now() - make_interval(hours =>
24 * $1)) FROM executions WHERE embedding IS NOT NULL GROUP BY repo"""
FORCED = {"exact": 10**12, "hnsw": 0}
"""exact_search_max_rows forcing each path."""
EF_SEARCH = (25, 50, 100, 200)
"""Values of the ef_search setting (the default is 100; the library doubles it on the
half-precision index and grows it with the square root of the rows beyond 100,000)."""
HNSW_CASES = ("unfiltered", "frequent repo")


async def filters(url: str) -> list[dict[str, Any]]:
    """(repo, days_back) pairs whose row counts come closest to each of TARGETS."""
    connection = await asyncpg.connect(url)
    try:
        found = [
            {"repo": repo, "days_back": days, "rows": n}
            for days in WINDOWS
            for repo, n in await connection.fetch(COUNTS, days or 100_000)
        ]
    finally:
        await connection.close()
    chosen: dict[tuple[str, int | None], dict[str, Any]] = {}
    for target in TARGETS:
        best = min(found, key=lambda f: abs(np.log(max(f["rows"], 1) / target)))
        if 0.5 <= best["rows"] / target <= 2:
            chosen[(best["repo"], best["days_back"])] = best
    return sorted(chosen.values(), key=lambda f: f["rows"])


def _searches(db: Any, point: dict[str, Any], names: list[str], answers: list[set[str]]) -> Any:
    """A search of the filter per call; the first pass over the queries keeps the ids."""
    pick = itertools.cycle(names)

    async def call() -> None:
        rows = await db.find_similar_executions(
            next(pick), repo=point["repo"], limit=10, days_back=point["days_back"], threshold=-1.0
        )
        if len(answers) < len(names):
            answers.append({str(r["task_id"]) for r in rows})

    return call


async def paths(level: Level, reference: Reference, calls: int) -> list[dict[str, Any]]:
    """Per filter: p50 of each path forced, the HNSW path's recall@10 against the exact
    one, the planner's estimate and the path the library takes by default."""
    points = await filters(level.url)
    dbs = {
        path: open_db(level.url, level.queries, exact_search_max_rows=limit)
        for path, limit in FORCED.items()
    }
    try:
        for db in dbs.values():
            await db.initialize()
        for point in points:
            answers: dict[str, list[set[str]]] = {path: [] for path in dbs}
            cases = {
                path: _searches(db, point, level.names, answers[path]) for path, db in dbs.items()
            }
            # warmup=0: the first calls collect the answers compared for recall.
            timed = await rounds(
                cases, reference, calls=max(calls, len(level.names)), warmup=0, budget=3_600
            )
            hits = sum(len(h & e) for h, e in zip(answers["hnsw"], answers["exact"], strict=True))
            async with dbs["exact"].connection() as connection:
                estimates = search.PlannerEstimates()
                estimate = await estimates.passing_rows(
                    connection, point["days_back"], point["repo"]
                )
                limit = search.exact_max_rows(
                    search.SearchTuning(), await estimates.table_rows(connection)
                )
            point.update(
                estimate=round(estimate),
                exact_max_rows=round(limit),
                library_path="exact" if estimate <= limit else "hnsw",
                hnsw_recall=round(hits / max(sum(map(len, answers["exact"])), 1), 4),
                **timed,
            )
    finally:
        for db in dbs.values():
            await db.close()
    return points


async def sweep(
    level: Level, exact: dict[str, list[list[str]]], reference: Reference, calls: int
) -> list[dict[str, Any]]:
    """recall@10 and latency of the HNSW cases at each ef_search setting."""
    from .search import recall, search_call

    out = []
    for ef_search in EF_SEARCH:
        async with open_db(level.url, level.queries, ef_search=ef_search) as db:
            quality = await recall(db, level.names, exact, HNSW_CASES)
            timed = await rounds(
                {c: search_call(db, c, level.names) for c in HNSW_CASES},
                reference,
                calls=calls,
                warmup=5,
            )
        out.append({"ef_search": ef_search, "recall": quality, **timed})
    return out


async def sample_check(level: Level, reference: Reference, calls: int) -> dict[str, Any]:
    """p50 of the HNSW cases through ``find_similar`` with the sample check and without."""
    tunings = {
        "checked": search.SearchTuning(),
        "unchecked": search.SearchTuning(check_sample_rows=0),
    }
    estimates = {name: search.PlannerEstimates() for name in tunings}
    async with open_db(level.url, level.queries) as db:

        def call(case: str, name: str) -> Any:
            repo, days_back = CASES[case]
            pick = itertools.cycle(level.queries)

            async def one() -> Any:
                async with db.connection() as connection:
                    return await search.find_similar(
                        connection,
                        next(pick),
                        repo=repo,
                        limit=10,
                        days_back=days_back,
                        threshold=-1.0,
                        tuning=tunings[name],
                        estimates=estimates[name],
                    )

            return one

        cases = {f"{case}, {name}": call(case, name) for case in HNSW_CASES for name in tunings}
        return await rounds(cases, reference, calls=calls, warmup=5)
