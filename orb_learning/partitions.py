"""The time partitions of ``executions`` (revision 0011), from Python.

``executions`` is one table unless a deployment converts it (:func:`convert_table`,
decision 0011); then it is partitioned by ``timestamp``, a month per partition by default,
with a default partition so that no insert ever fails for want of one.
:func:`create_partitions` calls ``orb_learning_create_partitions()`` (the refresher's tick
and ``orb-learning db partitions`` go through it; on one table it creates nothing): it
creates the partitions of the current period and ``ahead`` more, and of every period with
rows in the default partition, moving those rows into them. :func:`list_partitions` reads
``orb_learning_partitions()``. :func:`place_history` is what loads of history
(``bulk.bulk_load``, the DuckDB import) call after each batch, so that old rows get months
of their own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _arguments as arguments
from ._partition_routines import CREATE_FUNCTION, DEFAULT_AHEAD, LIST_FUNCTION, PERIODS
from .errors import ArgumentError

if TYPE_CHECKING:
    import asyncpg

    from ._sources import ConnectionSource

MAX_AHEAD = 120


@dataclass(frozen=True)
class Partition:
    """One partition: its name, its range [start, end) (None for the default one), its
    period (month, week, day; None when clipped) and the planner's row estimate."""

    name: str
    range_start: datetime | None
    range_end: datetime | None
    period: str | None
    rows_estimate: int
    is_default: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CreatedPartition:
    """A partition created, and the rows moved into it from the default partition."""

    name: str
    range_start: datetime
    range_end: datetime
    moved_rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def create_partitions(
    connection: asyncpg.Connection, *, ahead: int = DEFAULT_AHEAD, every: str | None = None
) -> list[CreatedPartition]:
    """Create the partitions missing (see the module doc); ``every`` changes the period
    from now on (day, week or month; by default the newest partition's)."""
    arguments.integer("ahead", ahead, minimum=0, maximum=MAX_AHEAD)
    if every is not None and every not in PERIODS:
        raise ArgumentError(f"every must be one of {', '.join(PERIODS)}, not {every!r}")
    rows = await connection.fetch(
        f"SELECT * FROM {CREATE_FUNCTION}($1::integer, $2::text)", ahead, every
    )
    return [
        CreatedPartition(r["partition_name"], r["range_start"], r["range_end"], r["moved_rows"])
        for r in rows
    ]


async def list_partitions(connection: asyncpg.Connection) -> list[Partition]:
    """Every partition of ``executions``, oldest first, the default one last."""
    rows = await connection.fetch(f"SELECT * FROM {LIST_FUNCTION}()")
    return [
        Partition(
            r["partition_name"],
            r["range_start"],
            r["range_end"],
            r["period"],
            r["rows_estimate"],
            r["is_default"],
        )
        for r in rows
    ]


async def place_history(db: ConnectionSource) -> int:
    """Move the rows a batch of history left in the default partition into partitions of
    their own (created for their periods); return how many moved.

    Without it a bulk load of a year of history would leave eleven months in the default
    partition: one large partition that no ``days_back`` prunes and no retention drops.
    Only the first batch to reach a month is moved (its rows written twice); the batches
    after it land in the month's partition directly. Nothing to move costs one call
    (``orb_learning_create_partitions()`` finds the default partition empty)."""
    async with db.connection() as connection:
        return sum(p.moved_rows for p in await create_partitions(connection))


async def convert_table(dsn: str) -> bool:
    """Partition ``executions`` by month, online (:mod:`orb_learning._partition_convert`):
    the rows are copied into the partitions in committed batches while the table stays in
    service, then one short transaction swaps the tables. Interrupted, a second call goes
    on after the last batch. False when the table is partitioned already. Needs the
    database at this library's head revision, as the tables' owner."""
    from . import _partition_convert as convert, migrations

    await migrations.check_revision(dsn)
    async with migrations.engine(dsn) as engine:
        async with engine.connect() as connection:
            if await connection.run_sync(convert.is_partitioned):
                return False
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.run_sync(convert.copy_phase)
        async with engine.begin() as connection:
            await connection.run_sync(convert.swap)
    return True
