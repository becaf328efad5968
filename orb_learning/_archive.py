"""The Parquet archive of retention: pending files per transaction, published after the
commit (see :mod:`orb_learning.retention` for the protocol), the layout and the columns."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ArchiveError
from .schema import executions as executions_table

if TYPE_CHECKING:
    import asyncpg

_CASTS = {"Uuid": "::text", "JSONB": "::text", "VECTOR": "::real[]", "HALFVEC": "::real[]"}
ARCHIVE_COLUMNS = tuple(c.name for c in executions_table.columns)
SELECT_LIST = ", ".join(
    f'"{c.name}"{_CASTS.get(type(c.type).__name__, "")} AS "{c.name}"'
    for c in executions_table.columns
)


def prepare_archive(archive: Path) -> None:
    """The archive directory, created, and writable: checked before any row is deleted."""
    try:
        archive.mkdir(parents=True, exist_ok=True)
        probe = archive / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ArchiveError(f"cannot write the archive under {archive}: {_reason(exc)}") from exc


async def archive_batch(archive: Path, rows: Sequence[Any], xid: str) -> list[Path]:
    """A batch's pending files; a file system error (disk full...) names the archive."""
    try:
        return await asyncio.to_thread(_write_pending, archive, rows, xid)
    except OSError as exc:
        raise ArchiveError(
            f"cannot write the archive under {archive}: {_reason(exc)}; the batch was rolled "
            "back, no row was deleted"
        ) from exc


def _reason(exc: OSError) -> str:
    return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")


def month_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def pending_files(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob(".*.pending") if p.is_file())


async def keep_absent(connection: asyncpg.Connection, path: Path) -> bool:
    """Rewrite ``path`` with its rows absent from the table; False when there are none."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = await asyncio.to_thread(pq.read_table, path)
    ids = table.column("task_id").to_pylist()
    present = await connection.fetch(
        "SELECT task_id::text AS id FROM executions WHERE task_id = ANY($1::uuid[])", ids
    )
    gone = pc.invert(pc.is_in(table["task_id"], pa.array([r["id"] for r in present], pa.string())))
    absent = table.filter(gone)
    if absent.num_rows:
        await asyncio.to_thread(_write_durably, absent, path)
    return bool(absent.num_rows)


def _arrow_table(rows: Sequence[Any]) -> Any:
    import pyarrow as pa

    text, stamp, vector = pa.string(), pa.timestamp("us", tz="UTC"), pa.list_(pa.float32())
    kinds = {"Uuid": text, "Text": text, "JSONB": text, "DateTime": stamp, "VECTOR": vector,
             "HALFVEC": vector, "Integer": pa.int32(), "Double": pa.float64(),
             "Boolean": pa.bool_()}  # fmt: skip
    schema = pa.schema([(c.name, kinds[type(c.type).__name__]) for c in executions_table.columns])
    return pa.table({n: [row[n] for row in rows] for n in ARCHIVE_COLUMNS}, schema=schema)


def _write_pending(archive: Path, rows: Sequence[Any], xid: str) -> list[Path]:
    """One pending Parquet file per UTC month of ``rows``, fsynced."""
    by_month: dict[str, list[Any]] = {}
    for row in rows:
        by_month.setdefault(month_of(row["timestamp"]), []).append(row)
    written: list[Path] = []
    try:
        for month, group in sorted(by_month.items()):
            year, month_number = month.split("-")
            directory = archive / f"year={year}" / f"month={month_number}"
            directory.mkdir(parents=True, exist_ok=True)
            first = min(row["timestamp"] for row in group).astimezone(UTC)
            digest = hashlib.sha256("\n".join(sorted(r["task_id"] for r in group)).encode())
            final = f"executions-{first:%Y%m%dT%H%M%S}-{digest.hexdigest()[:16]}.parquet"
            path = directory / f".{final}.{xid}.pending"
            written.append(path)
            _write_durably(_arrow_table(group), path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _write_durably(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    with open(path, "wb") as handle:
        pq.write_table(table, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_directory(path.parent)


def publish(pending: Path) -> Path:
    """Rename a pending file to its final name, unless that file holds the same rows."""
    import pyarrow.parquet as pq

    base = pending.name[1:].split(".parquet.")[0]
    final, suffix = pending.with_name(f"{base}.parquet"), 1
    while pending.exists():  # else another run published it meanwhile
        if not final.exists():
            os.replace(pending, final)
            _fsync_directory(final.parent)
        elif pq.read_table(final).equals(pq.read_table(pending)):
            pending.unlink()
        else:  # the same task_ids archived before with other values (stored again since)
            suffix += 1
            final = pending.with_name(f"{base}-{suffix}.parquet")
    return final


def _fsync_directory(directory: Path) -> None:
    """Make a created or renamed entry durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
