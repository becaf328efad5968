"""The exact answers and the baselines the search is compared with, on the same rows:

* PostgreSQL exact search: the same filters, ``ORDER BY embedding <=> q LIMIT 10`` with
  index scans off (``SET LOCAL enable_indexscan = off``), so no HNSW index is walked; the
  btree may still serve a filter through a bitmap scan, which is exact. Its ids are the
  reference of recall@10.
* NumPy: the exact top 10 by a matrix-vector product and ``argpartition`` over the rows
  passing the filters (the filtered rows copied into a matrix of their own beforehand, the
  most favourable case for NumPy).
* DuckDB (the engine of the first version): the same rows in an in-memory table with a
  ``FLOAT[384]`` column, ``array_cosine_similarity`` top 10, and the tier aggregate.

The SQL is written here on purpose, not taken from the library.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from .search_data import CASES, Columns

EXACT_SQL = {
    "unfiltered": "",
    "frequent repo": "AND repo = $2",
    "rare repo, 7 days": 'AND repo = $2 AND "timestamp" >= now() - make_interval(hours => 24 * $3)',
}
DUCK_FILTER = {
    "unfiltered": "",
    "frequent repo": "WHERE repo = $repo",
    "rare repo, 7 days": "WHERE repo = $repo AND ts >= $cutoff",
}
DUCK_TIER = """\
SELECT model_tier, task_type, count(*) AS total_executions,
       count(*) FILTER (WHERE success) AS successful_count,
       (count(*) FILTER (WHERE success))::DOUBLE / count(*) AS success_rate,
       avg(duration_seconds) AS avg_duration, avg(actual_cost) AS avg_cost,
       avg(quality_score)::DOUBLE AS avg_quality
FROM executions
WHERE ts >= date_trunc('day', now() - INTERVAL 30 DAY)
GROUP BY model_tier, task_type
ORDER BY model_tier, task_type"""


def _arguments(case: str) -> tuple[Any, ...]:
    repo, days_back = CASES[case]
    return tuple(v for v in (repo, days_back) if v is not None)


async def exact_pg(connection: asyncpg.Connection, case: str, query: np.ndarray) -> list[str]:
    """The exact top 10 ids, most similar first (ties broken by task_id)."""
    sql = (
        "SELECT task_id FROM executions WHERE embedding IS NOT NULL "
        f"{EXACT_SQL[case]} ORDER BY embedding <=> $1, task_id LIMIT 10"
    )
    async with connection.transaction(readonly=True):
        await connection.execute("SET LOCAL enable_indexscan = off")
        rows = await connection.fetch(sql, query, *_arguments(case), timeout=600)
    return [str(r["task_id"]) for r in rows]


async def exact_pg_plan(connection: asyncpg.Connection, case: str, query: np.ndarray) -> str:
    """The plan's node and relation names, to show that no HNSW index is walked."""
    sql = (
        "EXPLAIN (FORMAT JSON) SELECT task_id FROM executions WHERE embedding IS NOT NULL "
        f"{EXACT_SQL[case]} ORDER BY embedding <=> $1, task_id LIMIT 10"
    )
    async with connection.transaction(readonly=True):
        await connection.execute("SET LOCAL enable_indexscan = off")
        plan = await connection.fetchval(sql, query, *_arguments(case))
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        name = node["Node Type"]
        target = node.get("Index Name") or node.get("Relation Name")
        nodes.append(f"{name} ({target})" if target else name)
        for child in node.get("Plans", []):
            walk(child)

    import json

    walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return " > ".join(nodes)


class NumpyExact:
    """Exact top 10 in NumPy over the rows passing each case's filters."""

    def __init__(self, columns: Columns, matrix: np.ndarray, now: datetime) -> None:
        self.ids = np.asarray(columns.task_ids)
        self.subsets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for case, (repo, days_back) in CASES.items():
            if repo is None and days_back is None:
                self.subsets[case] = (matrix, np.arange(len(matrix)))
            else:
                where = np.flatnonzero(columns.mask(repo, days_back, now))
                self.subsets[case] = (np.ascontiguousarray(matrix[where]), where)

    def top10(self, case: str, query: np.ndarray) -> list[str]:
        matrix, where = self.subsets[case]
        if len(where) == 0:
            return []
        scores = matrix @ query
        k = min(10, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        return [str(self.ids[where[i]]) for i in best]

    def rows(self, case: str) -> int:
        return len(self.subsets[case][1])


class Duck:
    """The same rows in DuckDB: ``executions(id, repo, ts, ..., emb FLOAT[384])``."""

    def __init__(self, columns: Columns, matrix: np.ndarray) -> None:
        import duckdb
        import pyarrow as pa

        self.connection = duckdb.connect(":memory:")
        dimension = matrix.shape[1]
        table = pa.table(
            {
                "id": pa.array(columns.task_ids),
                "repo": pa.array(columns.repos),
                "ts": pa.array(columns.timestamps, pa.timestamp("us", tz="UTC")),
                "model_tier": pa.array(columns.tiers),
                "task_type": pa.array(columns.task_types),
                "success": pa.array(columns.success),
                "duration_seconds": pa.array(columns.durations, pa.float64()),
                "actual_cost": pa.array(columns.costs, pa.float64()),
                "quality_score": pa.array(columns.quality, pa.float64()),
                "emb": pa.FixedSizeListArray.from_arrays(
                    pa.array(matrix.astype(np.float32).ravel()), dimension
                ),
            }
        )
        self.connection.register("arrow_rows", table)
        self.connection.execute("CREATE TABLE executions AS SELECT * FROM arrow_rows")
        self.connection.unregister("arrow_rows")
        self.dimension = dimension
        self.version = str(duckdb.__version__)

    def top10(self, case: str, query: np.ndarray, now: datetime) -> list[str]:
        repo, days_back = CASES[case]
        parameters: dict[str, Any] = {"q": query.tolist()}
        if repo is not None:
            parameters["repo"] = repo
        if days_back is not None:
            parameters["cutoff"] = now - timedelta(days=days_back)
        sql = (
            f"SELECT id FROM executions {DUCK_FILTER[case]} "
            f"ORDER BY array_cosine_similarity(emb, $q::FLOAT[{self.dimension}]) DESC, id LIMIT 10"
        )
        return [row[0] for row in self.connection.execute(sql, parameters).fetchall()]

    def tier(self) -> list[tuple[Any, ...]]:
        return self.connection.execute(DUCK_TIER).fetchall()

    def close(self) -> None:
        self.connection.close()


def sync(function: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """A synchronous call as the round-robin timer takes it (it runs on the loop's thread)."""

    async def call() -> Any:
        return function()

    return call
