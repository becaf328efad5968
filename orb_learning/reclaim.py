"""After a large delete: rebuild the HNSW index from the live rows, then VACUUM.

VACUUM alone repairs the graph around every deleted element, one at a time on one core,
and once a few percent of the rows are gone almost every element has a deleted neighbour:
past a share that falls with the table (1% up to 100,000 rows, the fourth root of the rows
beyond: 0.56% at a million), a concurrent rebuild followed by a VACUUM with nothing left to
repair is faster, provided the graph fits in ``maintenance_work_mem`` (a build that spills
goes one element at a time on disk). The numbers are in
docs/decisions/0005-rebuild-after-delete.md; it is pgvector's own advice (its README,
"Vacuuming").

``REINDEX INDEX CONCURRENTLY`` and ``VACUUM`` take only a SHARE UPDATE EXCLUSIVE lock:
searches use the old index until the new one replaces it, writes go on. A rebuild that
fails (cancelled, out of disk) leaves an invalid copy named ``..._ccnew``; the next run
drops it first.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import bulk
from ._partition_routines import leaves
from .bulk import NO_TIMEOUT, VECTOR_INDEX

if TYPE_CHECKING:
    import asyncpg

    from ._sources import ConnectionSource

logger = logging.getLogger("orb_learning")
REBUILD_FRACTION = 0.01
"""Rebuild when the deleted rows are at least this share of a table of up to
``REFERENCE_ROWS`` rows; less beyond (:func:`rebuild_fraction`, module doc)."""
REFERENCE_ROWS = 100_000
GRAPH_MARGIN = 1.1
"""The graph in memory takes about what the index takes on disk: 10% to spare."""
LEFTOVERS = f"""\
SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid IN ({leaves()})
  AND NOT i.indisvalid AND c.relname LIKE $1"""
RESET_SETTINGS = "RESET maintenance_work_mem; RESET max_parallel_maintenance_workers"
# The partitions in scope ($3: their names; NULL for all) with their HNSW index and sizes.
SCOPE = """
SELECT t.relid::regclass::text AS partition, x.indexrelid::regclass::text AS vector_index,
       greatest(c.reltuples, 0)::bigint AS table_rows,
       coalesce(pg_relation_size(x.indexrelid), 0) AS index_bytes,
       pg_size_bytes($2) AS memory_bytes
FROM ({leaves}) t
JOIN pg_class c ON c.oid = t.relid
LEFT JOIN pg_index x ON x.indrelid = t.relid AND x.indexrelid IN ({index_leaves})
WHERE $3::text[] IS NULL OR t.relid::regclass::text = ANY($3::text[])
ORDER BY 1""".format(leaves=leaves(), index_leaves=leaves("to_regclass($1)"))


@dataclass
class ReclaimResult:
    """What :func:`after_delete` did and how long it took."""

    deleted_rows: int
    table_rows: int
    index_bytes: int
    rebuilt_index: bool
    rebuild_seconds: float = 0.0
    vacuum_seconds: float = 0.0
    dropped_leftovers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One sentence for the command line."""
        vacuum = f"vacuumed the table in {self.vacuum_seconds:.1f} s"
        if not self.rebuilt_index:
            return f"{vacuum[0].upper()}{vacuum[1:]}."
        return f"Rebuilt the HNSW index in {self.rebuild_seconds:.1f} s and {vacuum}."


def should_rebuild(
    deleted_rows: int, table_rows: int, *, index_bytes: int, memory_bytes: int
) -> bool:
    """Whether rebuilding beats VACUUM's graph repair, for ``deleted_rows`` of
    ``table_rows`` (the count before the delete, or the planner's estimate), with an index
    of ``index_bytes`` and ``memory_bytes`` of ``maintenance_work_mem`` for the build."""
    table_rows = max(table_rows, deleted_rows, 1)
    if deleted_rows <= 0 or deleted_rows < rebuild_fraction(table_rows) * table_rows:
        return False
    remaining = index_bytes * (table_rows - deleted_rows) / table_rows
    return remaining * GRAPH_MARGIN <= memory_bytes


def rebuild_fraction(table_rows: float) -> float:
    """The deleted share from which a rebuild beats VACUUM: VACUUM's repair grows costlier
    than the build as the graph grows (measured at 100,000 and 1,000,000 rows)."""
    scale = REFERENCE_ROWS / max(float(table_rows), REFERENCE_ROWS)
    return REBUILD_FRACTION * math.pow(scale, 0.25)


async def after_delete(
    db: ConnectionSource,
    *,
    deleted_rows: int,
    rebuild: bool | None = None,
    maintenance_work_mem: str = "2GB",
    parallel_workers: int = 2,
    partitions: Sequence[str] | None = None,
) -> ReclaimResult:
    """Per partition of ``partitions`` (by default all): rebuild its HNSW index if
    ``rebuild`` (by default: :func:`should_rebuild` against its row count and index size,
    the deleted rows counted against the partitions in scope), then ``VACUUM (ANALYZE)``
    it. A retention run passes the partitions it deleted rows from: the others are not
    touched (revision 0011)."""
    async with db.connection() as connection:
        scope = await connection.fetch(
            SCOPE,
            VECTOR_INDEX,
            maintenance_work_mem,
            None if partitions is None else list(partitions),
        )
        table_rows = sum(row["table_rows"] for row in scope)
        index_bytes = sum(row["index_bytes"] for row in scope)
        result = ReclaimResult(deleted_rows, table_rows, index_bytes, rebuilt_index=False)
        result.dropped_leftovers = await drop_leftovers(connection)
        missing = not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", VECTOR_INDEX)
        if missing and rebuild is not False:  # a killed bulk load dropped it: build it
            started = time.perf_counter()
            await bulk.build_vector_index(
                connection,
                maintenance_work_mem=maintenance_work_mem,
                parallel_workers=parallel_workers,
            )
            result.rebuilt_index = True
            result.rebuild_seconds = time.perf_counter() - started
            rebuild = False
        for row in scope:
            share = (  # never analyzed: count them all against each partition
                round(deleted_rows * row["table_rows"] / table_rows) if table_rows else deleted_rows
            )
            if _rebuilds(rebuild, share, row, maintenance_work_mem):
                started = time.perf_counter()
                await rebuild_vector_index(
                    connection,
                    maintenance_work_mem=maintenance_work_mem,
                    parallel_workers=parallel_workers,
                    index=row["vector_index"],
                )
                result.rebuilt_index = True
                result.rebuild_seconds += time.perf_counter() - started
            started = time.perf_counter()
            await connection.execute(f"VACUUM (ANALYZE) {row['partition']}", timeout=NO_TIMEOUT)
            result.vacuum_seconds += time.perf_counter() - started
        if partitions is None:
            await connection.execute("ANALYZE executions", timeout=NO_TIMEOUT)
    return result


def _rebuilds(rebuild: bool | None, deleted: int, row: Any, memory: str) -> bool:
    if rebuild is not None:
        return rebuild and row["vector_index"] is not None
    if row["vector_index"] is None:
        return False
    decided = should_rebuild(
        deleted, row["table_rows"], index_bytes=row["index_bytes"], memory_bytes=row["memory_bytes"]
    )
    if not decided and deleted >= REBUILD_FRACTION * max(row["table_rows"], 1):
        logger.warning(
            "reclaim: the HNSW graph of %s (%d MB) does not fit in maintenance_work_mem %s; "
            "VACUUM repairs it instead, which takes long: raise maintenance_work_mem",
            row["partition"],
            row["index_bytes"] // 2**20,
            memory,
        )
    return decided


async def rebuild_vector_index(
    connection: asyncpg.Connection,
    *,
    maintenance_work_mem: str,
    parallel_workers: int,
    index: str = VECTOR_INDEX,
) -> None:
    """``REINDEX INDEX CONCURRENTLY`` with the bulk path's memory and workers (session
    settings, reset afterwards: REINDEX CONCURRENTLY cannot run in a transaction)."""
    present = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", index)
    if not present:  # a killed bulk load dropped it: build it
        await bulk.build_vector_index(
            connection, maintenance_work_mem=maintenance_work_mem, parallel_workers=parallel_workers
        )
        return
    await bulk.set_build_settings(connection, maintenance_work_mem, parallel_workers, local=False)
    try:
        await connection.execute(
            f"REINDEX INDEX CONCURRENTLY {index}",  # a constant, or a name the server quoted
            timeout=NO_TIMEOUT,
        )
    finally:
        with suppress(Exception):  # never mask the rebuild's own error; a broken
            await connection.execute(RESET_SETTINGS)  # connection leaves the pool anyway


async def drop_leftovers(connection: asyncpg.Connection) -> int:
    """Drop the invalid copies a failed ``REINDEX CONCURRENTLY`` left (``_ccnew``...)."""
    names = [row[0] for row in await connection.fetch(LEFTOVERS, f"{VECTOR_INDEX}%\\_cc%")]
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        await connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}", timeout=NO_TIMEOUT)
    return len(names)
