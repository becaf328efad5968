"""Bulk loads and warming: what an import of a million rows and a restart need.

**Bulk load.** Inserting into a table whose HNSW index is maintained costs a graph insertion
per row: about 1,000 rows/s on 2 cores, so one ``store_executions`` call of 30,000 rows
outlives the default 30 s ``command_timeout``, and a million rows take over 15 minutes.
:func:`deferred_vector_index` drops the HNSW index, lets the caller load (binary COPY runs
at tens of thousands of rows/s without it), then builds the index once, with
``maintenance_work_mem`` raised so that the graph is built in memory and with parallel
workers, on a statement without the pool's timeout. The index is rebuilt from the
library's schema metadata even when the load fails, so a load never leaves the table
without it (a process killed mid-load does: :func:`ensure_vector_index` rebuilds it, and
``orb-learning db validate`` reports it). While the index is away, search still answers,
exactly, by a sequential scan: slow at scale, so bulk loads belong in a maintenance window.

**Prewarm.** After a restart the index's pages are on disk only (or in the OS cache) and the
first searches read them one by one; :func:`prewarm` loads the HNSW index (and optionally
the table) into shared buffers with the ``pg_prewarm`` extension in one sequential pass.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._partition_routines import NAME_ALL_INDEXES, leaves
from .errors import DatabaseError

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

    from ._sources import ConnectionSource, RecordStore
    from ._store import RecordInput

VECTOR_INDEX = "idx_executions_embedding_hnsw"
NO_TIMEOUT = 7 * 24 * 3600.0
"""asyncpg takes ``None`` as "the pool's command_timeout": an index build gets a week."""
Batch = tuple["Sequence[RecordInput]", "Sequence[np.ndarray] | np.ndarray | None"]


@dataclass
class BulkLoadStats:
    """What a bulk load did and how long each part took (seconds)."""

    rows: int = 0
    load_seconds: float = 0.0
    index_seconds: float = 0.0
    analyze_seconds: float = 0.0
    indexes: list[str] = field(default_factory=list)
    moved_rows: int = 0
    """Rows moved from the default partition into partitions created for them."""

    @property
    def total_seconds(self) -> float:
        return self.load_seconds + self.index_seconds + self.analyze_seconds


def vector_index_sql() -> str:
    """``CREATE INDEX`` of the HNSW index as the schema metadata (the migrations) define it."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    from . import schema

    index = next(i for i in schema.executions.indexes if i.name == VECTOR_INDEX)
    return str(CreateIndex(index).compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


async def set_build_settings(
    connection: asyncpg.Connection, memory: str, parallel_workers: int, *, local: bool
) -> None:
    """The memory and workers of an index build: for the transaction (``local``) or for
    the session (a ``CONCURRENTLY`` build, which cannot run in a transaction)."""
    await connection.execute(
        "SELECT set_config('maintenance_work_mem', $1, $3), "
        "set_config('max_parallel_maintenance_workers', $2, $3)",
        memory,
        str(parallel_workers),
        local,
    )


async def build_vector_index(
    connection: asyncpg.Connection,
    *,
    maintenance_work_mem: str = "2GB",
    parallel_workers: int = 2,
) -> float:
    """Build the HNSW index if it is missing, in memory and in parallel; return seconds."""
    started = time.perf_counter()
    async with connection.transaction():
        # the raised memory ends with this transaction
        await set_build_settings(connection, maintenance_work_mem, parallel_workers, local=True)
        sql = vector_index_sql().replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1)
        await connection.execute(sql, timeout=NO_TIMEOUT)  # one graph per partition
        await connection.execute(NAME_ALL_INDEXES)
    return time.perf_counter() - started


async def ensure_vector_index(db: ConnectionSource, **build: Any) -> bool:
    """Build the HNSW index if a killed bulk load left it dropped; True if it was built."""
    async with db.connection() as connection:
        present = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", VECTOR_INDEX)
        if present:
            return False
        await build_vector_index(connection, **build)
    return True


@asynccontextmanager
async def deferred_vector_index(
    db: ConnectionSource,
    *,
    maintenance_work_mem: str = "2GB",
    parallel_workers: int = 2,
) -> AsyncIterator[BulkLoadStats]:
    """Drop the HNSW index for the block, then build it (even if the block raised) and
    ANALYZE the table. The stats' ``index_seconds`` is the build."""
    stats = BulkLoadStats(indexes=[VECTOR_INDEX])
    async with db.connection() as connection:
        await connection.execute(f"DROP INDEX IF EXISTS {VECTOR_INDEX}")  # a constant
    started = time.perf_counter()
    try:
        yield stats
    finally:
        stats.load_seconds = time.perf_counter() - started
        async with db.connection() as connection:
            stats.index_seconds = await build_vector_index(
                connection,
                maintenance_work_mem=maintenance_work_mem,
                parallel_workers=parallel_workers,
            )
            started = time.perf_counter()
            await connection.execute("ANALYZE executions", timeout=NO_TIMEOUT)
            stats.analyze_seconds = time.perf_counter() - started


async def bulk_load(
    db: RecordStore,
    batches: Iterable[Batch],
    *,
    maintenance_work_mem: str = "2GB",
    parallel_workers: int = 2,
) -> BulkLoadStats:
    """Store ``(records, embeddings)`` batches through ``store_executions`` (binary COPY,
    upsert by task_id) with the HNSW index dropped, then build it once.

    Keep batches at a few tens of thousands of rows: each is one transaction, and without
    the index one of 20,000 rows takes about a second. ``embeddings`` may be ``None`` for a
    batch (the model embeds it). Rows older than the oldest partition are moved out of the
    default partition after each batch (:func:`orb_learning.partitions.place_history`)."""
    from .partitions import place_history

    async with deferred_vector_index(
        db, maintenance_work_mem=maintenance_work_mem, parallel_workers=parallel_workers
    ) as stats:
        for records, embeddings in batches:
            stats.rows += await db.store_executions(records, embeddings=embeddings)
            stats.moved_rows += await place_history(db)
    return stats


async def prewarm(db: ConnectionSource, *, table: bool = False) -> dict[str, int]:
    """Load the HNSW index (and the table when ``table``) into shared buffers; return the
    blocks read per relation. Creates the ``pg_prewarm`` extension if it is missing, which
    needs the right to (a superuser, or ``rds_superuser``-like roles on managed servers)."""
    import asyncpg

    relations = [VECTOR_INDEX, *(["executions"] if table else [])]
    async with db.connection() as connection:
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        except asyncpg.PostgresError as exc:
            raise DatabaseError(
                f"pg_prewarm is not installed and cannot be created here: {exc} "
                "(ask an administrator: CREATE EXTENSION pg_prewarm)"
            ) from exc
        blocks: dict[str, int] = {}
        for relation in relations:
            present = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", relation)
            if present:
                blocks[relation] = await connection.fetchval(
                    "SELECT coalesce(sum(pg_prewarm(relid)), 0)::bigint "
                    f"FROM ({leaves('$1::regclass')}) t",  # every partition's
                    relation,
                    timeout=NO_TIMEOUT,
                )
    return blocks
