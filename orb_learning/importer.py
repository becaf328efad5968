"""Import a DuckDB learning database of the first version into PostgreSQL.

The file is opened read-only and its ``executions`` table read in batches, whatever variant
of the first version's DDL wrote it: naive ``TIMESTAMP`` values are taken as UTC, ``FLOAT``
(32-bit) values come back as the shortest decimal that round-trips (0.85, not
0.8500000238418579, which is what the producer wrote), ``metadata`` JSON or NULL (-> ``{}``),
and columns the file lacks (``swarm_topology``, ``solution_summary``, ``metadata``...) take
the :class:`ExecutionRecord` defaults. Error types outside the enum ("rate_limit",
"network_error"...) go through :meth:`ErrorType.from_text`, the original text kept in
``metadata["original_error_type"]``.

Every row is validated as an :class:`ExecutionRecord`; an invalid one is skipped whole and
reported with its task_id and reason. Rows are upserted by task_id, so a second run imports
nothing twice: the summary counts new rows as ``imported`` and rows already present as
``updated`` (checked before each batch).

**Embeddings are recomputed by default**, from the task description as search embeds it.
The first version's vectors cannot be trusted to live in this model's space: its files hold
768-dimension vectors of another model (nomic-embed-text), and its 384-dimension ones were
synthetic SHA-256 hashes of "{task_type} {repo} {description}" or embeddings of a labelled
composite string, so cosine similarity against a query embedded here would be noise.
``keep_embeddings=True`` keeps stored 384-dimension vectors as they are, for a file known to
hold all-MiniLM-L6-v2 embeddings of the description; others are still recomputed.

**Large files** (``BULK_ROWS`` rows or more, or ``defer_index=True``) load with the HNSW
index dropped and build it once at the end (:func:`orb_learning.bulk.deferred_vector_index`):
maintaining the graph row by row caps a load at about 1,000 rows/s, building it afterwards
takes minutes for a million rows. The index is rebuilt even when the import fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from . import _store as store, bulk
from .config import EMBEDDING_DIMENSION
from .errors import ConfigurationError, OrbLearningError
from .models import ErrorType, ExecutionRecord
from .partitions import place_history

if TYPE_CHECKING:
    import numpy as np

    from ._sources import RecordStore

logger = logging.getLogger("orb_learning")
Progress = Callable[[int, int], None]
"""Called after each batch with (rows read so far, rows in the file)."""

REQUIRED_COLUMNS = (
    "task_id",  # without it, a second run could not recognise the rows it imported
    "timestamp",  # without it, every row would be stamped with the import's time
    *(name for name, info in ExecutionRecord.model_fields.items() if info.is_required()),
)
_KEYED_BY_FILE = ("task_id", "timestamp")  # a NULL here is invalid, never a default
_FLOAT32_TYPES = ("FLOAT", "REAL", "FLOAT4")
BULK_ROWS = 50_000
"""From this many rows in the file on, the import defers the HNSW index (see above)."""

FIRST_VERSION_FIELDS = [c for c in ExecutionRecord.model_fields if c != "recommendation_id"]
"""The columns a first-version file may have (``recommendation_id`` came with revision 0010)."""


class ImportSourceError(OrbLearningError, ValueError):
    """The DuckDB file cannot be read as a first-version learning database."""


@dataclass
class SkippedRow:
    task_id: str
    reason: str


@dataclass
class ImportSummary:
    """What an import did: rows read, new, already present (updated) and skipped (why)."""

    path: str
    read: int = 0
    imported: int = 0
    updated: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    duplicates: int = 0
    embeddings_computed: int = 0
    embeddings_kept: int = 0
    error_types_mapped: dict[str, int] = field(default_factory=dict)
    defaulted_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    index_deferred: bool = False
    index_seconds: float = 0.0
    seconds: float = 0.0
    moved_rows: int = 0
    """Rows moved out of the default partition into months created for them."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped_count"] = len(self.skipped)
        return data

    def skip_reasons(self) -> dict[str, int]:
        """Skipped rows per reason (the field and message, without the row's values)."""
        return dict(Counter(s.reason for s in self.skipped).most_common())


class _InvalidRow(ValueError):
    pass


async def import_duckdb(
    db: RecordStore,
    path: str | Path,
    *,
    batch_size: int = 1000,
    keep_embeddings: bool = False,
    progress: Progress | None = None,
    defer_index: bool | None = None,
) -> ImportSummary:
    """Copy the ``executions`` of a first-version DuckDB file into ``db`` (upsert by task_id).

    ``defer_index``: drop the HNSW index during the load and build it at the end; default:
    when the file holds at least :data:`BULK_ROWS` rows."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    source = Path(path)
    if not source.is_file():
        raise ImportSourceError(f"{source}: no such DuckDB file")
    duck = await asyncio.to_thread(_open, source)
    try:
        types = await asyncio.to_thread(_column_types, duck, source)
        summary = ImportSummary(
            path=str(source),
            defaulted_columns=[c for c in FIRST_VERSION_FIELDS if c not in types],
            ignored_columns=[
                c for c in types if c not in store.WRITE_COLUMNS and c != "uploaded_at"
            ],
        )
        if summary.ignored_columns:
            logger.warning("%s: columns not imported: %s", source, summary.ignored_columns)
        counted = await asyncio.to_thread(duck.execute, "SELECT count(*) FROM executions")
        total_rows = int(counted.fetchone()[0])
        columns = [c for c in types if c in store.WRITE_COLUMNS]
        if not keep_embeddings and "embedding" in columns:
            columns.remove("embedding")
        cursor = await asyncio.to_thread(duck.execute, _select(columns, types))
        summary.index_deferred = total_rows >= BULK_ROWS if defer_index is None else defer_index
        started = time.perf_counter()
        async with (
            bulk.deferred_vector_index(db)
            if summary.index_deferred
            else contextlib.nullcontext(None)
        ) as deferred:
            while rows := await asyncio.to_thread(cursor.fetchmany, batch_size):
                summary.read += len(rows)
                batch = [dict(zip(columns, row, strict=True)) for row in rows]
                await _import_batch(db, batch, types, summary)
                summary.moved_rows += await place_history(db)
                if progress is not None:
                    progress(summary.read, total_rows)
        if deferred is not None:
            summary.index_seconds = deferred.index_seconds
        summary.seconds = time.perf_counter() - started
    finally:
        await asyncio.to_thread(duck.close)
    return summary


def _open(source: Path) -> Any:
    try:
        import duckdb
    except ImportError as exc:
        raise ConfigurationError(
            "importing DuckDB files needs the duckdb package: pip install 'orb-learning[duckdb]'"
        ) from exc

    try:
        return duckdb.connect(str(source), read_only=True)
    except duckdb.Error as exc:
        raise ImportSourceError(f"{source}: cannot open as DuckDB read-only: {exc}") from exc


def _column_types(duck: Any, source: Path) -> dict[str, str]:
    """The ``executions`` table's columns and DuckDB types, checked for the required ones."""
    rows = duck.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'executions' AND table_schema = 'main' ORDER BY ordinal_position"
    ).fetchall()
    if not rows:
        raise ImportSourceError(f"{source}: no executions table")
    types = {str(name): str(kind).upper() for name, kind in rows}
    missing = [c for c in REQUIRED_COLUMNS if c not in types]
    if missing:
        raise ImportSourceError(f"{source}: executions lacks required columns {missing}")
    return types


def _select(columns: Sequence[str], types: dict[str, str]) -> str:
    """The SELECT: timestamptz values converted to naive UTC, everything else as stored."""
    parts = []
    for column in columns:
        quoted = '"' + column.replace('"', '""') + '"'
        if column == "timestamp" and "TIME ZONE" in types[column]:
            parts.append(f"timezone('UTC', {quoted})")
        else:
            parts.append(quoted)
    return f"SELECT {', '.join(parts)} FROM executions"


async def _import_batch(
    db: RecordStore,
    rows: list[dict[str, Any]],
    types: dict[str, str],
    summary: ImportSummary,
) -> None:
    """Validate a batch, count new and present task_ids, and store it (embedding as asked)."""
    latest: dict[Any, tuple[ExecutionRecord, np.ndarray | None]] = {}
    for row in rows:
        try:
            record, embedding = _record(row, types, summary)
        except _InvalidRow as exc:
            task_id = row.get("task_id")
            summary.skipped.append(SkippedRow("?" if task_id is None else str(task_id), str(exc)))
            continue
        if record.task_id in latest:
            summary.duplicates += 1
        latest[record.task_id] = (record, embedding)
    if not latest:
        return
    async with db.connection() as connection:
        present = {
            r["task_id"]
            for r in await connection.fetch(
                "SELECT task_id FROM executions WHERE task_id = ANY($1::uuid[])", list(latest)
            )
        }
    kept = [(r, e) for r, e in latest.values() if e is not None]
    computed = [r for r, e in latest.values() if e is None]
    if kept:
        await db.store_executions([r for r, _ in kept], embeddings=[e for _, e in kept])
    if computed:
        await db.store_executions(computed)
    summary.embeddings_kept += len(kept)
    summary.embeddings_computed += len(computed)
    summary.updated += len(present)
    summary.imported += len(latest) - len(present)


def _record(
    row: dict[str, Any], types: dict[str, str], summary: ImportSummary
) -> tuple[ExecutionRecord, np.ndarray | None]:
    """One DuckDB row as a validated record and, when it fits the model, its stored vector."""
    embedding = row.pop("embedding", None)
    fields: dict[str, Any] = {}
    for column, value in row.items():
        if value is None and column not in _KEYED_BY_FILE:
            continue  # NULL: the record's default (None, 0, 50, {})
        if types[column] in _FLOAT32_TYPES and isinstance(value, float):
            value = _shortest_float32(value)
        fields[column] = value
    fields["metadata"] = _metadata(fields.get("metadata"))
    original = fields.get("error_type")
    remapped = None
    if isinstance(original, str):
        fields["error_type"] = ErrorType.from_text(original)  # None for empty text
        if fields["error_type"] is not None and original != fields["error_type"].value:
            fields["metadata"]["original_error_type"] = remapped = original
    try:
        record = ExecutionRecord.model_validate(fields)
    except ValidationError as exc:
        raise _InvalidRow(
            "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())
        ) from None
    if remapped is not None:
        summary.error_types_mapped[remapped] = summary.error_types_mapped.get(remapped, 0) + 1
    return record, _usable(embedding, record)


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise _InvalidRow(f"metadata: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _InvalidRow(f"metadata: a JSON object was expected, got {type(value).__name__}")
    return value


def _shortest_float32(value: float) -> float:
    """The shortest decimal that is the same 32-bit float: what the producer wrote."""
    import numpy as np

    return float(str(np.float32(value)))


def _usable(embedding: Any, record: ExecutionRecord) -> np.ndarray | None:
    """The stored vector when it fits the column and can be searched; else None (recompute)."""
    if embedding is None or len(embedding) != EMBEDDING_DIMENSION:
        return None
    try:
        return store.check_embedding(embedding, record.task_id)
    except (TypeError, ValueError):
        return None
