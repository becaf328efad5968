"""Time partitions (revision 0011) against the one table they replaced, in the same run.

The level's database, bulk-loaded at head (a month per partition, the year of history
placed by ``bulk.bulk_load``), is cloned and the clone downgraded to revision 0010: one
table, one HNSW graph (the downgrade is timed). Then both answer the same questions:

* **search**: the library's search function (its path choice, default tuning; the query
  embedded beforehand) for ``days_back`` 7 / 30 / 90 / all, both databases in the same
  rounds with the machine reference, recall@10 against PostgreSQL's exact top 10 of the
  window (computed once, on the table: same rows), and which plan the HNSW statement got
  on the partitions (per-partition index scans merged, or a sort of the window's rows);
* **ingest** with the HNSW index maintained: the same rows (stamped now), binary COPY of
  1,000 rows per transaction, alternating between the two;
* **storage** per row, indexes included (``execution_keys`` apart);
* **retention of the oldest month**: on the partitions the library's retention with its
  Parquet archive (the month's partition detached and dropped, the edge day deleted row by
  row, then its reclaim); on the table the same rows deleted in batches of 5,000 (no
  archive: a head start) and the reclaim it then needs (``reclaim.after_delete``: a
  rebuild of the HNSW index at these shares);
* **conversion**: last, the table converted back to partitions by ``alembic upgrade``
  (the batched, resumable path above 20,000 rows), timed.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np

from orb_learning import _codecs, _search as search, bulk, migrations, reclaim, retention
from orb_learning._store import WRITE_COLUMNS, row_of
from orb_learning.partitions import list_partitions

from . import server
from .data import Level
from .timing import Reference, log, rounds, timed

WINDOWS: dict[str, int | None] = {"7 days": 7, "30 days": 30, "90 days": 90, "all": None}
FLAT_REVISION = "0010"
DELETE_BATCH = 5_000
EXACT_SQL = (
    "SELECT task_id FROM executions WHERE embedding IS NOT NULL {window} "
    "ORDER BY embedding <=> $1, task_id LIMIT 10"
)
WINDOW_SQL = 'AND "timestamp" >= now() - make_interval(hours => 24 * $2)'
FLAT_ROWS = "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'executions'::regclass"
LEAF_BYTES = """SELECT coalesce(sum(pg_total_relation_size(relid)), 0)
FROM pg_partition_tree('executions') WHERE isleaf"""


@dataclass(frozen=True)
class Parameters:
    calls: int = 200
    budget: float = 20.0
    ingest_rows: int = 5_000
    min_rows: int = 100_000
    """Smaller levels skip the part: their months hold a few thousand rows each."""


QUICK = Parameters(calls=20, budget=2.0, ingest_rows=1_000, min_rows=1_000)


class FlatEstimates(search.PlannerEstimates):
    """The planner's figures on the one table of revision 0010, as that revision read them
    (``pg_partition_tree`` lists nothing for a table that is not partitioned)."""

    async def table_rows(self, connection: asyncpg.Connection) -> float:
        return await self._cached(connection, "table", lambda: (FLAT_ROWS,))

    async def graph_rows(self, connection: asyncpg.Connection) -> float:
        return await self.table_rows(connection)


class Source:
    """A connection source (what retention and reclaim take) over one plain connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        yield self._connection


async def connect(url: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(url, command_timeout=86_400)
    await _codecs.init_connection(connection)
    return connection


async def measure(
    level: Level, maintenance: str, reference: Reference, p: Parameters
) -> dict[str, Any]:
    """The whole comparison at ``level`` (its database is changed: run it last), on the
    server whose maintenance database is at ``maintenance``."""
    flat_name = f"orb_bench_flat_{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {"rows": level.rows}
    log(f"[{level.rows:,}] partitions: the one-table clone (downgrade to {FLAT_REVISION})")
    out["clone_seconds"] = await server.clone(maintenance, level.url, flat_name)
    flat_url = server.with_database(maintenance, flat_name)
    try:
        started = time.perf_counter()
        await migrations.downgrade(flat_url, FLAT_REVISION)
        out["downgrade_seconds"] = round(time.perf_counter() - started, 1)
        flat, parts = await connect(flat_url), await connect(level.url)
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
            log(f"[{level.rows:,}] partitions: ingest")
            out["ingest"] = await _ingest(flat, parts, level, reference, p)
            log(f"[{level.rows:,}] partitions: retention of the oldest month")
            out["retention"] = await _retention(flat, parts, reference)
        finally:
            await flat.close()
            await parts.close()
        log(f"[{level.rows:,}] partitions: converting the table (upgrade to head)")
        out["conversion"] = await _conversion(flat_url)
    finally:
        await server.drop(maintenance, flat_name)
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
    table = await flat.fetchval("SELECT pg_total_relation_size('executions')")
    leaves = await parts.fetchval(LEAF_BYTES)
    keys = await parts.fetchval("SELECT pg_total_relation_size('execution_keys')")
    return {
        "rows": rows,
        "table_bytes_per_row": round(table / rows),
        "partitions_bytes_per_row": round(leaves / rows),
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


def _searcher(
    connection: asyncpg.Connection, queries: np.ndarray, days: int | None, flat: bool
) -> Any:
    estimates = FlatEstimates() if flat else search.PlannerEstimates()
    tuning = search.SearchTuning()
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
        f"{kind}, {case}": _searcher(connection, level.queries, days, kind == "table")
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
    flat: asyncpg.Connection,
    parts: asyncpg.Connection,
    level: Level,
    reference: Reference,
    p: Parameters,
) -> dict[str, Any]:
    seconds = {"table": 0.0, "partitions": 0.0}
    for start in range(0, p.ingest_rows, 1_000):
        records, vectors = level.generator.live_tail(min(1_000, p.ingest_rows - start))
        rows = [row_of(r, v) for r, v in zip(records, vectors, strict=True)]
        for kind, connection in (("table", flat), ("partitions", parts)):

            async def write(c: asyncpg.Connection = connection, r: list[Any] = rows) -> None:
                async with c.transaction():
                    await c.copy_records_to_table(
                        "executions", records=r, columns=list(WRITE_COLUMNS)
                    )

            seconds[kind] += await timed(write) / 1000
    return {
        "rows": p.ingest_rows,
        "rows_per_second": {k: round(p.ingest_rows / s, 1) for k, s in seconds.items()},
        "reference": await reference.burst(),
    }


async def _retention(
    flat: asyncpg.Connection, parts: asyncpg.Connection, reference: Reference
) -> dict[str, Any]:
    listed = [p for p in await list_partitions(parts) if not p.is_default and p.rows_estimate]
    oldest_end = listed[0].range_end
    assert oldest_end is not None
    days = math.floor((datetime.now(UTC) - oldest_end).total_seconds() / 86_400)
    out: dict[str, Any] = {"days_to_keep": days, "oldest_partition": listed[0].name}
    with tempfile.TemporaryDirectory(prefix="orb-bench-archive-") as archive:
        started = time.perf_counter()
        result = await retention.cleanup_old_executions(Source(parts), days, archive)
        out["partitions"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "deleted": result["deleted_count"],
            "archived": result["archived_count"],
            "partitions_dropped": result["partitions_dropped"],
            "partition_rows": result["partition_rows"],
            "reclaim": result["reclaimed"],
        }
    table_rows = await flat.fetchval("SELECT count(*) FROM executions")
    started, deleted = time.perf_counter(), 0
    while count := await _delete_batch(flat, days):
        deleted += count
    delete_seconds = time.perf_counter() - started
    work = await _flat_reclaim(flat, deleted, table_rows)
    out["table"] = {
        "delete_seconds": round(delete_seconds, 2),
        "deleted": deleted,
        **work,
        "seconds": round(delete_seconds + work["rebuild_seconds"] + work["vacuum_seconds"], 2),
    }
    out["reference"] = await reference.burst()
    return out


async def _flat_reclaim(flat: asyncpg.Connection, deleted: int, table_rows: int) -> dict[str, Any]:
    """What retention's reclaim did on the one table (revision 0010): a concurrent rebuild of
    the HNSW index when the rule says so, then VACUUM (ANALYZE)."""
    index_bytes = await flat.fetchval("SELECT pg_relation_size($1::regclass)", bulk.VECTOR_INDEX)
    memory = await flat.fetchval("SELECT pg_size_bytes('2GB')")
    rebuild = reclaim.should_rebuild(
        deleted, table_rows, index_bytes=index_bytes, memory_bytes=memory
    )
    started = time.perf_counter()
    if rebuild:
        await reclaim.rebuild_vector_index(flat, maintenance_work_mem="2GB", parallel_workers=2)
    rebuilt = time.perf_counter() - started
    started = time.perf_counter()
    await flat.execute("VACUUM (ANALYZE) executions")
    return {
        "share": round(deleted / max(table_rows, 1), 4),
        "rebuilt_index": rebuild,
        "rebuild_seconds": round(rebuilt, 2),
        "vacuum_seconds": round(time.perf_counter() - started, 2),
    }


async def _delete_batch(flat: asyncpg.Connection, days: int) -> int:
    """Oldest first, as retention deletes: one transaction of at most 5,000 rows."""
    status: str = await flat.execute(
        "DELETE FROM executions WHERE task_id IN (SELECT task_id FROM executions "
        'WHERE "timestamp" < now() - make_interval(days => $1) '
        'ORDER BY "timestamp" LIMIT $2)',
        days,
        DELETE_BATCH,
    )
    return int(status.split()[-1])


async def _conversion(flat_url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(flat_url)
    try:
        rows = await connection.fetchval("SELECT count(*) FROM executions")
    finally:
        await connection.close()
    started = time.perf_counter()
    await migrations.upgrade(flat_url)
    seconds = time.perf_counter() - started
    connection = await asyncpg.connect(flat_url)
    try:
        converted = await connection.fetchval("SELECT count(*) FROM executions")
        leaves = await connection.fetchval(
            "SELECT count(*) FROM pg_partition_tree('executions') WHERE isleaf"
        )
    finally:
        await connection.close()
    return {
        "rows": rows,
        "rows_after": converted,
        "partitions": leaves,
        "seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds),
    }
