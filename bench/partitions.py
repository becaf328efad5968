"""Time partitions (``orb-learning db partitions --convert``) against one table, the
default, in the same run (decision 0011).

The level's database (one table, bulk-loaded) is cloned and the clone converted to monthly
partitions by :func:`orb_learning.partitions.convert_table` (the batched, resumable path:
timed, the conversion at this level's rows). Then both answer the same questions:

* **search**: the library's search function (its path choice, default tuning; the query
  embedded beforehand) for ``days_back`` 7 / 30 / 90 / all, both databases in the same
  rounds with the machine reference, recall@10 against PostgreSQL's exact top 10 of the
  window (computed once, on the table: same rows), and which plan the HNSW statement got
  on the partitions (per-partition index scans merged, or a sort of the window's rows);
* **ingest** with the HNSW index maintained: the same rows (stamped now) through
  ``store_executions`` in calls of 1,000, alternating between the two;
* **storage** per row, indexes included (``execution_keys`` apart: both have it);
* **retention of the oldest month**: the library's retention with its Parquet archive on
  both: on the partitions the month's partition detached and dropped (the edge day deleted
  row by row), on the table the rows deleted in batches and the reclaim that follows (a
  rebuild of the HNSW index at these shares).
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np

from orb_learning import _codecs, _search as search
from orb_learning._partition_routines import leaves
from orb_learning.partitions import convert_table, list_partitions

from . import server
from .data import Level, open_db
from .timing import Reference, log, rounds, timed

WINDOWS: dict[str, int | None] = {"7 days": 7, "30 days": 30, "90 days": 90, "all": None}
EXACT_SQL = (
    "SELECT task_id FROM executions WHERE embedding IS NOT NULL {window} "
    "ORDER BY embedding <=> $1, task_id LIMIT 10"
)
WINDOW_SQL = 'AND "timestamp" >= now() - make_interval(hours => 24 * $2)'
LEAF_BYTES = f"SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM ({leaves()}) t"


@dataclass(frozen=True)
class Parameters:
    calls: int = 200
    budget: float = 20.0
    ingest_rows: int = 5_000
    min_rows: int = 100_000
    """Smaller levels skip the part: their months hold a few thousand rows each."""


QUICK = Parameters(calls=20, budget=2.0, ingest_rows=1_000, min_rows=1_000)


async def connect(url: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(url, command_timeout=86_400)
    await _codecs.init_connection(connection)
    return connection


async def measure(
    level: Level, maintenance: str, reference: Reference, p: Parameters
) -> dict[str, Any]:
    """The whole comparison at ``level`` (its database is changed: run it last), on the
    server whose maintenance database is at ``maintenance``."""
    parts_name = f"orb_bench_parts_{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {"rows": level.rows}
    log(f"[{level.rows:,}] partitions: a clone of the table, converted")
    out["clone_seconds"] = await server.clone(maintenance, level.url, parts_name)
    parts_url = server.with_database(maintenance, parts_name)
    try:
        out["conversion"] = await _conversion(parts_url)
        flat, parts = await connect(level.url), await connect(parts_url)
        try:
            for connection in (flat, parts):
                await connection.execute("VACUUM (ANALYZE) executions")
            out["partitions"] = await _partition_rows(parts)
            out["storage"] = await _storage(flat, parts)
            log(f"[{level.rows:,}] partitions: the exact answers")
            exact = await _exact_answers(flat, level.queries)
            log(f"[{level.rows:,}] partitions: search, both in the same rounds")
            out["search"] = await _search(flat, parts, level, exact, reference, p)
            out["plans"] = await _plans(parts, level.queries[0])
        finally:
            await flat.close()
            await parts.close()
        log(f"[{level.rows:,}] partitions: ingest")
        out["ingest"] = await _ingest(level.url, parts_url, level, reference, p)
        log(f"[{level.rows:,}] partitions: retention of the oldest month")
        out["retention"] = await _retention(level.url, parts_url, level, reference)
    finally:
        await server.drop(maintenance, parts_name)
    return out


async def _partition_rows(parts: asyncpg.Connection) -> dict[str, Any]:
    listed = await list_partitions(parts)
    rows = [p.rows_estimate for p in listed if not p.is_default and p.rows_estimate > 0]
    default = sum(p.rows_estimate for p in listed if p.is_default)
    return {
        "count": len(listed),
        "holding_rows": len(rows),
        "largest_rows": max(rows, default=0),
        "smallest_rows": min(rows, default=0),
        "default_rows": default,
    }


async def _storage(flat: asyncpg.Connection, parts: asyncpg.Connection) -> dict[str, Any]:
    rows = await flat.fetchval("SELECT count(*) FROM executions")
    table = await flat.fetchval(LEAF_BYTES)
    partitioned = await parts.fetchval(LEAF_BYTES)
    keys = await parts.fetchval("SELECT pg_total_relation_size('execution_keys')")
    return {
        "rows": rows,
        "table_bytes_per_row": round(table / rows),
        "partitions_bytes_per_row": round(partitioned / rows),
        "execution_keys_bytes_per_row": round(keys / rows),
    }


Answers = dict[str, list[set[str]]]
"""Per window, per query: the exact top-10 task ids."""


async def _exact_answers(flat: asyncpg.Connection, queries: np.ndarray) -> Answers:
    out: Answers = {}
    for case, days in WINDOWS.items():
        sql = EXACT_SQL.format(window="" if days is None else WINDOW_SQL)
        answers = []
        for query in queries:
            async with flat.transaction(readonly=True):
                await flat.execute("SET LOCAL enable_indexscan = off")
                rows = await flat.fetch(sql, query, *([] if days is None else [days]))
            answers.append({str(r["task_id"]) for r in rows})
        out[case] = answers
    return out


def _searcher(connection: asyncpg.Connection, queries: np.ndarray, days: int | None) -> Any:
    estimates, tuning = search.PlannerEstimates(), search.SearchTuning()
    pick = itertools.cycle(range(len(queries)))

    async def call(index: int | None = None) -> list[dict[str, Any]]:
        query = queries[next(pick) if index is None else index]
        return await search.find_similar(
            connection, query, repo=None, limit=10, days_back=days, threshold=-1.0,
            tuning=tuning, estimates=estimates,
        )  # fmt: skip

    return call


async def _search(
    flat: asyncpg.Connection,
    parts: asyncpg.Connection,
    level: Level,
    exact: Answers,
    reference: Reference,
    p: Parameters,
) -> dict[str, Any]:
    calls = {
        f"{kind}, {case}": _searcher(connection, level.queries, days)
        for case, days in WINDOWS.items()
        for kind, connection in (("table", flat), ("partitions", parts))
    }
    recall = {}
    for name, call in calls.items():
        truth = exact[name.split(", ", 1)[1]]
        hits = [
            len({str(r["task_id"]) for r in await call(i)} & expected)
            for i, expected in enumerate(truth)
        ]
        recall[name] = round(sum(hits) / max(sum(len(t) for t in truth), 1), 4)
    timed_rounds = await rounds(calls, reference, calls=p.calls, budget=p.budget)
    timed_rounds["recall"] = recall
    return timed_rounds


async def _plans(parts: asyncpg.Connection, query: np.ndarray) -> dict[str, dict[str, int]]:
    """Per window, what the HNSW statement's plan reads on the partitions: partitions read
    through their HNSW index, and sorts (the window's rows compared one by one)."""
    out = {}
    for case, days in WINDOWS.items():
        filters = search._FILTERS[(days is not None, False)]
        values = {"query": query, "days_back": days, "repo": None, "threshold": -1.0,
                  "limit": 10, "candidates": 40}  # fmt: skip
        sql, *arguments = search._compile(search._hnsw_sql(filters), values)
        plan = "\n".join(r[0] for r in await parts.fetch(f"EXPLAIN {sql}", *arguments))
        out[case] = {
            "hnsw_index_scans": plan.count("idx_executions_embedding_hnsw"),
            "sorts": plan.count("Sort"),
            "merge_append": plan.count("Merge Append"),
        }
    return out


async def _ingest(
    flat_url: str, parts_url: str, level: Level, reference: Reference, p: Parameters
) -> dict[str, Any]:
    seconds = {"table": 0.0, "partitions": 0.0}
    async with (
        open_db(flat_url, level.queries) as flat,
        open_db(parts_url, level.queries) as parts,
    ):
        for start in range(0, p.ingest_rows, 1_000):
            records, vectors = level.generator.live_tail(min(1_000, p.ingest_rows - start))
            for kind, db in (("table", flat), ("partitions", parts)):

                async def write(d: Any = db, r: Any = records, v: Any = vectors) -> None:
                    await d.store_executions(r, embeddings=v)

                seconds[kind] += await timed(write) / 1000
    return {
        "rows": p.ingest_rows,
        "rows_per_second": {k: round(p.ingest_rows / s, 1) for k, s in seconds.items()},
        "reference": await reference.burst(),
    }


async def _retention(
    flat_url: str, parts_url: str, level: Level, reference: Reference
) -> dict[str, Any]:
    """The library's retention of the oldest month on both, each with its archive."""
    async with open_db(parts_url, level.queries) as parts, parts.connection() as connection:
        listed = [p for p in await list_partitions(connection) if p.rows_estimate]
    oldest = next(p for p in listed if not p.is_default)
    oldest_end = oldest.range_end
    assert oldest_end is not None
    days = math.floor((datetime.now(UTC) - oldest_end).total_seconds() / 86_400)
    out: dict[str, Any] = {"days_to_keep": days, "oldest_partition": oldest.name}
    for kind, url in (("partitions", parts_url), ("table", flat_url)):
        async with open_db(url, level.queries, command_timeout=86_400) as db:
            async with db.connection() as connection:
                rows = await connection.fetchval("SELECT count(*) FROM executions")
            with tempfile.TemporaryDirectory(prefix="orb-bench-archive-") as archive:
                started = time.perf_counter()
                result = await db.cleanup_old_executions(days, archive)
                seconds = time.perf_counter() - started
        reclaimed = result["reclaimed"] or {}
        rebuild, vacuum = (
            reclaimed.get("rebuild_seconds", 0.0),
            reclaimed.get("vacuum_seconds", 0.0),
        )
        out[kind] = {
            "seconds": round(seconds, 2),
            "deleted": result["deleted_count"],
            "archived": result["archived_count"],
            "share": round(result["deleted_count"] / max(rows, 1), 4),
            "partitions_dropped": result["partitions_dropped"],
            "partition_rows": result["partition_rows"],
            "delete_seconds": round(seconds - rebuild - vacuum, 2),
            "rebuilt_index": bool(reclaimed.get("rebuilt_index")),
            "rebuild_seconds": round(rebuild, 2),
            "vacuum_seconds": round(vacuum, 2),
        }
    out["reference"] = await reference.burst()
    return out


async def _conversion(url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetchval("SELECT count(*) FROM executions")
    finally:
        await connection.close()
    started = time.perf_counter()
    converted = await convert_table(url)
    seconds = time.perf_counter() - started
    connection = await asyncpg.connect(url)
    try:
        after = await connection.fetchval("SELECT count(*) FROM executions")
        leaves = await connection.fetchval(
            "SELECT count(*) FROM pg_partition_tree('executions') WHERE isleaf"
        )
    finally:
        await connection.close()
    assert converted, "the clone was partitioned already"
    return {
        "rows": rows,
        "rows_after": after,
        "partitions": leaves,
        "seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds),
    }
