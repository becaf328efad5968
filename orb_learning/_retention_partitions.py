"""Retention of whole partitions (revision 0011): a month past the cutoff goes at once.

One transaction per partition: its rows are archived (pending files, as a batch's), their
keys deleted (their feedback with them), the history parts marked for a rebuild, and the
partition detached and dropped. Nothing is deleted row by row from an HNSW graph, so
nothing is left to repair: no index rebuild, no long VACUUM.

Why not ``DETACH PARTITION ... CONCURRENTLY``: PostgreSQL refuses it on a table that has a
default partition, and the default partition is what lets no insert fail. The plain
DETACH takes an ACCESS EXCLUSIVE lock on ``executions`` for the catalog change only (the
rows are not touched), taken last in the transaction and with ``lock_timeout`` (5 s), so a
long query in the way makes the run wait at most that long and try again, never queue the
searches behind it for long (docs/decisions/0011-time-partitions.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ._archive import SELECT_LIST
from ._history_marks import HISTORY_PARTS

if TYPE_CHECKING:
    import asyncpg

LOCK_TIMEOUT = "5s"
ATTEMPTS = 3
WHOLE = """\
SELECT partition_name, range_start, range_end, rows_estimate FROM orb_learning_partitions()
WHERE NOT is_default AND range_end <= $1 ORDER BY range_start"""
COUNT_FEEDBACK = """\
SELECT count(*) FROM feedback f JOIN execution_keys k USING (task_id)
WHERE k."timestamp" >= $1 AND k."timestamp" < $2"""
DELETE_KEYS = 'DELETE FROM execution_keys WHERE "timestamp" >= $1 AND "timestamp" < $2'
MARK_HISTORY = f"""\
INSERT INTO view_history_dirty AS d (view_name, since)
SELECT w.view_name, $1 FROM view_watermarks w
WHERE w.view_name = ANY ({HISTORY_PARTS}) AND $1 < w.watermark
ON CONFLICT (view_name) DO UPDATE SET since = least(d.since, excluded.since)"""


@dataclass(frozen=True)
class WholePartition:
    name: str
    range_start: datetime
    range_end: datetime
    rows_estimate: int


async def whole_partitions(
    connection: asyncpg.Connection, cutoff: datetime
) -> list[WholePartition]:
    """The partitions whose every row is older than ``cutoff``, oldest first."""
    return [WholePartition(*row) for row in await connection.fetch(WHOLE, cutoff)]


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def select_rows(partition: WholePartition) -> str:
    """The partition's rows, as retention archives them (its name comes from the catalog)."""
    return f'SELECT {SELECT_LIST} FROM {quoted(partition.name)} ORDER BY "timestamp", task_id'


async def drop(connection: asyncpg.Connection, partition: WholePartition) -> int:
    """In the caller's transaction: delete the partition's keys (and their feedback), mark
    the history it held, detach and drop it; return the feedback rows deleted."""
    feedback = int(
        await connection.fetchval(COUNT_FEEDBACK, partition.range_start, partition.range_end)
    )
    await connection.execute(DELETE_KEYS, partition.range_start, partition.range_end)
    await connection.execute(MARK_HISTORY, partition.range_start)
    await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await connection.execute(f"ALTER TABLE executions DETACH PARTITION {quoted(partition.name)}")
    await connection.execute(f"DROP TABLE {quoted(partition.name)}")
    return feedback
