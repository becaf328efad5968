"""Retention: archive executions older than a cutoff to Parquet, then delete them in batches.

Rows go oldest first, ``batch_size`` (5,000) per transaction, so the table stays writable.
Their feedback goes with them (``ON DELETE CASCADE``; it is not archived, the executions keep
the latest ``user_rating``/``user_accepted``), and so do the route recommendations made
before the cutoff (a log, not archived). The analytics views keep the purged buckets
until their next refresh.

**An interrupted run loses nothing and never archives a row twice.** A batch is one
transaction that locks its rows (``FOR UPDATE``), writes them to Parquet under a *pending*
name carrying its transaction id (one file per month, fsynced), deletes them and commits;
only then is each pending file renamed, atomically, to its final name. So the archive is on
disk before the delete takes effect, and final files hold exactly rows whose delete
committed. A batch failing before its commit is rolled back and its pending files removed
(the rows stay, a later run archives them). Pending files left by a killed run are settled
first by every archiving run, asking PostgreSQL's commit log (``pg_xact_status``):
committed -> renamed (the rows live only there), aborted -> removed (the rows are still in
the table), in progress -> left alone (another run at work); status unknown (too old) ->
kept for the rows no longer in the table. Final names derive from the content, and a final
file that exists with the same rows is never written again.

Layout: ``DIR/year=YYYY/month=MM/executions-<first timestamp>-<hash of the ids>.parquet``
(UTC months, zstd), every column of the table: ``task_id`` and ``metadata`` (JSON) as
text, timestamps as UTC timestamps, ``embedding`` as ``list<float32>``. Pending files start
with a dot and end in ``.pending``: DuckDB's ``**/*.parquet`` and pyarrow/pandas datasets
skip them.

**Then the space comes back.** A run that deleted rows ends with :func:`reclaim.after_delete
<orb_learning.reclaim.after_delete>`: ``VACUUM (ANALYZE)``, preceded by a concurrent rebuild of
the HNSW index when the run deleted 1% of the table or more (VACUUM's graph repair would
take longer than the rebuild). ``reclaim=False`` leaves that to autovacuum.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _arguments as arguments, _retention_partitions as partitions
from ._archive import (
    ARCHIVE_COLUMNS,  # noqa: F401 (re-exported: what an archive file holds)
    SELECT_LIST,
    archive_batch,
    keep_absent,
    month_of,
    pending_files,
    prepare_archive,
    publish,
)
from .errors import ArgumentError, ConfigurationError, DatabaseError
from .reclaim import ReclaimResult, after_delete

if TYPE_CHECKING:
    import asyncpg

    from ._sources import ConnectionSource

logger = logging.getLogger("orb_learning")
BATCH_SIZE = 5000
MAX_DAYS_TO_KEEP = 365_000
SELECT_BATCH = (
    f"SELECT {SELECT_LIST}, tableoid::regclass::text AS partition FROM executions "
    'WHERE "timestamp" < $1 '
    'ORDER BY "timestamp" LIMIT $2 FOR UPDATE'
)
DELETE_BATCH = "DELETE FROM executions WHERE task_id = ANY($1::uuid[])"
XACT_STATUS = "SELECT pg_xact_status($1::text::xid8)"
COUNT_FEEDBACK = "SELECT count(*) FROM feedback WHERE task_id = ANY($1::uuid[])"
DELETE_RECOMMENDATIONS = "DELETE FROM route_recommendations WHERE created_at < $1"
COUNT_RECOMMENDATIONS = "SELECT count(*) FROM route_recommendations WHERE created_at < $1"
PLAN = """\
SELECT to_char(e."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM') AS month, count(*) AS rows,
       coalesce(sum(f.n), 0)::bigint AS feedback
FROM executions e
LEFT JOIN (SELECT task_id, count(*) AS n FROM feedback GROUP BY task_id) f USING (task_id)
WHERE e."timestamp" < $1 GROUP BY 1 ORDER BY 1"""


@dataclass
class RetentionResult:
    """What a run did (or, with ``dry_run``, would do)."""

    days_cleaned: int
    cutoff: datetime
    dry_run: bool = False
    archived_count: int = 0
    deleted_count: int = 0
    feedback_deleted: int = 0
    recommendations_deleted: int = 0
    """``route_recommendations`` rows made before the cutoff (a log: not archived)."""
    batches: int = 0
    months: dict[str, int] = field(default_factory=dict)
    archive_files: list[str] = field(default_factory=list)
    recovered_files: list[str] = field(default_factory=list)
    discarded_pending: int = 0
    pending_files: int = 0
    reclaimed: ReclaimResult | None = None
    partitions_dropped: list[str] = field(default_factory=list)
    """Whole partitions past the cutoff, archived and dropped (revision 0011)."""
    partition_rows: int = 0
    """Of ``deleted_count``, the rows that went with them (the rest: deleted row by row)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retention:
    """One retention run over ``db``: rows stamped before now - ``days_to_keep`` days go.

    ``before_commit`` and ``before_publish`` are no-op hooks a subclass may override, e.g.
    to stop a run at a precise point (the tests simulate interruptions that way).
    """

    def __init__(
        self,
        db: ConnectionSource,
        *,
        days_to_keep: int = 90,
        archive_path: str | os.PathLike[str] | None = None,
        batch_size: int = BATCH_SIZE,
        now: datetime | None = None,
        progress: Callable[[int, int], None] | None = None,
        reclaim: bool = True,
    ) -> None:
        arguments.integer("days_to_keep", days_to_keep, minimum=0, maximum=MAX_DAYS_TO_KEEP)
        arguments.integer("batch_size", batch_size, minimum=1)
        self.db = db
        self.days_to_keep = days_to_keep
        self.cutoff = (now or datetime.now(UTC)) - timedelta(days=days_to_keep)
        self.archive = None if archive_path is None else Path(archive_path)
        if self.archive is not None and self.archive.exists() and not self.archive.is_dir():
            raise ArgumentError(f"archive path {self.archive} exists and is not a directory")
        if self.archive is not None and importlib.util.find_spec("pyarrow") is None:
            raise ConfigurationError("archiving needs pyarrow: pip install 'orb-learning[duckdb]'")
        self.batch_size = batch_size
        self._progress = progress
        self.reclaim = reclaim
        self._touched: set[str] = set()

    async def before_commit(self, batch: int) -> None:
        """Called in batch ``batch``'s transaction after its DELETE; raising rolls it back."""

    async def before_publish(self, batch: int) -> None:
        """Called after batch ``batch`` committed, before its pending files are renamed."""

    async def plan(self) -> RetentionResult:
        """What a run would archive and delete, per month; changes nothing."""
        result = RetentionResult(self.days_to_keep, self.cutoff, dry_run=True)
        async with self.db.connection() as connection:
            for row in await connection.fetch(PLAN, self.cutoff):
                result.months[row["month"]] = row["rows"]
                result.feedback_deleted += row["feedback"]
            result.recommendations_deleted = await connection.fetchval(
                COUNT_RECOMMENDATIONS, self.cutoff
            )
            whole = await partitions.whole_partitions(connection, self.cutoff)
            result.partitions_dropped = [partition.name for partition in whole]
        result.deleted_count = sum(result.months.values())
        result.archived_count = result.deleted_count if self.archive is not None else 0
        if self.archive is not None and self.archive.is_dir():
            result.pending_files = len(pending_files(self.archive))  # a run settles them
        return result

    async def run(self) -> RetentionResult:
        """Settle pending archive files, archive and delete batch after batch, then (if rows
        went and ``reclaim``) rebuild the HNSW index when the delete was large, and VACUUM."""
        result = RetentionResult(self.days_to_keep, self.cutoff)
        if self.archive is not None:
            prepare_archive(self.archive)
            await self._settle(result)
        total = (await self.plan()).deleted_count if self._progress is not None else 0
        async with self.db.connection() as connection:
            whole = await partitions.whole_partitions(connection, self.cutoff)
        for partition in whole:  # whole months at once, then the edge row by row
            await self._drop_partition(partition, result)
            if self._progress is not None:
                self._progress(result.deleted_count, max(total, result.deleted_count))
        while await self._batch(result.batches + 1, result):
            result.batches += 1
            if self._progress is not None:
                self._progress(result.deleted_count, max(total, result.deleted_count))
        async with self.db.connection() as connection:
            status = await connection.execute(DELETE_RECOMMENDATIONS, self.cutoff)
            result.recommendations_deleted = int(status.split()[-1])
        deleted_rows = result.deleted_count - result.partition_rows
        if self.reclaim and deleted_rows:  # only the partitions rows were deleted from
            result.reclaimed = await after_delete(
                self.db, deleted_rows=deleted_rows, partitions=sorted(self._touched)
            )
        return result

    async def _drop_partition(
        self, partition: partitions.WholePartition, result: RetentionResult
    ) -> None:
        """Archive, detach and drop one partition in one transaction (a lock not granted
        within the timeout is tried again, up to three times)."""
        import asyncpg

        for attempt in range(1, partitions.ATTEMPTS + 1):
            try:  # a failed attempt has removed its pending files
                async with self.db.connection() as connection:
                    rows, feedback, pending = await self._archive_and_drop(connection, partition)
                break
            except asyncpg.LockNotAvailableError:
                if attempt == partitions.ATTEMPTS:
                    raise DatabaseError(
                        f"retention could not detach {partition.name}: a lock on executions "
                        f"was not granted within {partitions.LOCK_TIMEOUT} {attempt} times "
                        "(a long query?); run it again later",
                        sqlstate="55P03",
                        transient=True,
                    ) from None
                await asyncio.sleep(attempt)
        await self.before_publish(0)
        for path in pending:
            result.archive_files.append(str(await asyncio.to_thread(publish, path)))
        result.archived_count += rows if self.archive is not None else 0
        result.deleted_count += rows
        result.partition_rows += rows
        result.feedback_deleted += feedback
        result.partitions_dropped.append(partition.name)
        month = f"{partition.range_start.astimezone(UTC):%Y-%m}"
        if rows:
            result.months[month] = result.months.get(month, 0) + rows

    async def _archive_and_drop(
        self, connection: asyncpg.Connection, partition: partitions.WholePartition
    ) -> tuple[int, int, list[Path]]:
        rows = 0
        async with archiving_transaction(connection) as (xid, pending):
            await connection.execute(
                f"DECLARE orb_retention CURSOR FOR {partitions.select_rows(partition)}"
            )
            while chunk := await connection.fetch(
                f"FETCH {int(self.batch_size)} FROM orb_retention"
            ):
                rows += len(chunk)
                if self.archive is not None:
                    pending += await archive_batch(self.archive, chunk, xid)
            await connection.execute("CLOSE orb_retention")  # DROP TABLE refuses an open one
            feedback = await partitions.drop(connection, partition)
            await self.before_commit(0)
        return rows, feedback, pending

    async def _batch(self, number: int, result: RetentionResult) -> bool:
        """One batch; False when no row is left before the cutoff."""
        async with (
            self.db.connection() as connection,
            archiving_transaction(connection) as (xid, pending),
        ):
            rows = await connection.fetch(SELECT_BATCH, self.cutoff, self.batch_size)
            if not rows:
                return False
            ids = [row["task_id"] for row in rows]
            self._touched.update(row["partition"] for row in rows)
            if self.archive is not None:
                pending += await archive_batch(self.archive, rows, xid)
            feedback = await connection.fetchval(COUNT_FEEDBACK, ids)
            deleted = int((await connection.execute(DELETE_BATCH, ids)).split()[-1])
            if deleted != len(rows):
                raise DatabaseError(f"deleted {deleted} of {len(rows)} locked rows")
            await self.before_commit(number)
        await self.before_publish(number)
        for path in pending:
            result.archive_files.append(str(await asyncio.to_thread(publish, path)))
        result.archived_count += len(rows) if pending else 0
        result.deleted_count += deleted
        result.feedback_deleted += feedback
        for month, count in Counter(month_of(row["timestamp"]) for row in rows).items():
            result.months[month] = result.months.get(month, 0) + count
        return True

    async def _settle(self, result: RetentionResult) -> None:
        """Finish or discard the pending files of earlier runs (see the module docstring)."""
        import asyncpg

        assert self.archive is not None
        async with self.db.connection() as connection:
            for path in pending_files(self.archive):
                try:  # committed, aborted, in progress, or None when too old to be known
                    status = await connection.fetchval(XACT_STATUS, path.name.split(".")[-2])
                except asyncpg.PostgresError:  # not a transaction of this server's past
                    status = None
                if status == "in progress":
                    continue  # another run's batch, in flight
                # committed: publish; aborted: drop; unknown: keep the rows no longer stored
                keep = status == "committed" if status else await keep_absent(connection, path)
                if keep:
                    final = await asyncio.to_thread(publish, path)
                    result.recovered_files.append(str(final))
                    logger.warning("retention: published %s of an interrupted run", final)
                else:
                    path.unlink(missing_ok=True)
                    result.discarded_pending += 1


@asynccontextmanager
async def archiving_transaction(
    connection: asyncpg.Connection,
) -> AsyncIterator[tuple[str, list[Path]]]:
    """A transaction and the pending archive files written in it (named by its id): a
    failure rolls it back and removes them; if the COMMIT itself fails, they wait to be
    settled by the next run (see the module doc)."""
    pending: list[Path] = []
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield await connection.fetchval("SELECT pg_current_xact_id()::text"), pending
    except BaseException:
        with suppress(Exception):
            await transaction.rollback()
        for path in pending:
            path.unlink(missing_ok=True)
        raise
    await transaction.commit()


async def cleanup_old_executions(
    db: ConnectionSource,
    days_to_keep: int = 90,
    archive_path: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    reclaim: bool = True,
) -> dict[str, Any]:
    """The first version's method: ``archived_count``, ``deleted_count``, ``days_cleaned``
    (== ``days_to_keep``) and the run's details."""
    retention = Retention(
        db,
        days_to_keep=days_to_keep,
        archive_path=archive_path,
        batch_size=batch_size,
        reclaim=reclaim,
    )
    return (await retention.run()).to_dict()
