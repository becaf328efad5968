"""Writing executions: records staged (binary COPY for a batch), then upserted by task_id.

Writes are idempotent by ``task_id``: storing a record again updates its row (later data
wins, except that a NULL ``user_rating``/``user_accepted`` keeps what feedback set), so
retries and replays never duplicate, also when a retry carries another timestamp (the row
moves to that partition). A write is one transaction: it lands whole or not at all.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .config import EMBEDDING_DIMENSION
from .errors import ArgumentError, InvalidRecordError, is_translatable, translate
from .models import ExecutionRecord
from .redaction import Redactor, redact_record

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

logger = logging.getLogger("orb_learning")
RecordInput = ExecutionRecord | Mapping[str, Any]
"""What the batch path takes: records, or dicts validated into records."""
Embed = Callable[[Sequence[str]], Awaitable["np.ndarray"]]

RECORD_COLUMNS: tuple[str, ...] = tuple(ExecutionRecord.model_fields)
"""The record's columns (every field is one): what writes send and reads return."""
WRITE_COLUMNS: tuple[str, ...] = (*RECORD_COLUMNS, "embedding")
_COLUMN_LIST = ", ".join(f'"{c}"' for c in WRITE_COLUMNS)
_FEEDBACK_COLUMNS = ("user_accepted", "user_rating")  # set by feedback: a retry keeps them


def _assignment(column: str) -> str:
    if column in _FEEDBACK_COLUMNS:
        return f'"{column}" = COALESCE(s."{column}", e."{column}")'
    return f'"{column}" = s."{column}"'


_UPDATE_LIST = ", ".join(_assignment(c) for c in WRITE_COLUMNS if c != "task_id")
STAGING_TABLE = "executions_staging"
CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} "
    "(LIKE executions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
INSERT_STAGING = (
    f"INSERT INTO {STAGING_TABLE} ({_COLUMN_LIST}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(WRITE_COLUMNS) + 1))})"
)
# The upsert by task_id, on a table partitioned by timestamp (revision 0011), in three
# statements of one transaction, each with its own snapshot:
# 1. lock the batch's keys in execution_keys (inserting the new ones), in task_id order so
#    that two batches sharing task_ids cannot deadlock; a concurrent writer of the same
#    task_id waits here for this commit, then finds the row this one stored;
# 2. update the rows already stored, wherever they are (a new timestamp moves the row to
#    its partition; the key trigger moves its key, and the feedback stays with it);
# 3. insert the others.
LOCK_KEYS = (
    'WITH locked AS (INSERT INTO execution_keys AS k (task_id, "timestamp") '
    f'SELECT task_id, "timestamp" FROM {STAGING_TABLE} ORDER BY task_id '
    'ON CONFLICT (task_id) DO UPDATE SET "timestamp" = k."timestamp" '
    "RETURNING old.task_id IS NOT NULL AS existed) "
    "SELECT coalesce(bool_or(existed), false) FROM locked"
)
UPDATE_STORED = (
    f"UPDATE executions e SET {_UPDATE_LIST}, uploaded_at = now() "
    f"FROM {STAGING_TABLE} s JOIN execution_keys k USING (task_id) "
    'WHERE e.task_id = k.task_id AND e."timestamp" = k."timestamp"'
)
INSERT_NEW = (
    f"INSERT INTO executions ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {STAGING_TABLE} "
    'ON CONFLICT (task_id, "timestamp") DO NOTHING'
)


def row_of(record: ExecutionRecord, embedding: np.ndarray | None) -> tuple[Any, ...]:
    """The record's values in :data:`WRITE_COLUMNS` order, as asyncpg encodes them."""
    values = [getattr(record, column) for column in RECORD_COLUMNS]
    error_index = RECORD_COLUMNS.index("error_type")
    if values[error_index] is not None:
        values[error_index] = values[error_index].value
    return (*values, embedding)


def check_embedding(vector: np.ndarray, task_id: object) -> np.ndarray:
    """Refuse an embedding that the column would reject or that would poison search; return
    it as stored: scaled to unit length (cosine does not see the scale, and half precision
    would overflow beyond 65,504) in half precision (revision 0008)."""
    import numpy as np

    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (EMBEDDING_DIMENSION,):
        raise ArgumentError(
            f"embedding of task {task_id} has shape {array.shape}, "
            f"expected ({EMBEDDING_DIMENSION},)"
        )
    if not np.isfinite(array).all():
        raise ArgumentError(f"embedding of task {task_id} contains NaN or infinite values")
    norm = float(np.linalg.norm(array.astype(np.float64)))
    if math.isclose(norm, 0.0, abs_tol=1e-6):
        raise ArgumentError(f"embedding of task {task_id} is the zero vector (no cosine direction)")
    stored: np.ndarray = (array / norm).astype(np.float16)
    return stored


def latest_per_task(
    records: Sequence[ExecutionRecord], embeddings: Sequence[np.ndarray]
) -> list[tuple[ExecutionRecord, np.ndarray]]:
    """Keep one entry per task_id, the later one, in first-seen order: an upsert of the
    same key twice in one statement would fail, and later data wins."""
    latest: dict[object, tuple[ExecutionRecord, np.ndarray]] = {}
    for record, embedding in zip(records, embeddings, strict=True):
        latest[record.task_id] = (record, embedding)
    return list(latest.values())


@asynccontextmanager
async def write_transaction(connection: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction whose outcome the caller can trust: rolled back on any error in the
    body; a connection lost while its COMMIT is in flight raises
    :class:`~orb_learning.errors.CommitOutcomeUnknownError` (it may have landed), never a
    plain "unavailable" that would read as "nothing was written"."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield
    except BaseException:
        with suppress(Exception):
            await transaction.rollback()
        raise
    try:
        await transaction.commit()
    except Exception as exc:
        if is_translatable(exc):
            raise translate(exc, committing=True) from exc
        raise


@asynccontextmanager
async def committing() -> AsyncIterator[None]:
    """A write that commits as it runs (one statement, no transaction block): a connection
    lost under it leaves the outcome unknown, and the error says so."""
    try:
        yield
    except Exception as exc:
        if is_translatable(exc):
            raise translate(exc, committing=True) from exc
        raise


async def upsert_one(
    connection: asyncpg.Connection, record: ExecutionRecord, embedding: np.ndarray
) -> None:
    """One record, through the same three statements as a batch (one row staged)."""
    async with write_transaction(connection):
        await connection.execute(CREATE_STAGING)
        await connection.execute(INSERT_STAGING, *row_of(record, embedding))
        await _merge_staged(connection)


async def upsert_many(
    connection: asyncpg.Connection, pairs: Sequence[tuple[ExecutionRecord, np.ndarray]]
) -> int:
    """Binary COPY into a session-local staging table, then the upsert from it."""
    if not pairs:
        return 0
    async with write_transaction(connection):
        await connection.execute(CREATE_STAGING)
        await connection.copy_records_to_table(
            STAGING_TABLE,
            records=[row_of(record, embedding) for record, embedding in pairs],
            columns=list(WRITE_COLUMNS),
        )
        await _merge_staged(connection)
    return len(pairs)


async def _merge_staged(connection: asyncpg.Connection) -> None:
    """The staged rows stored by task_id (see :data:`LOCK_KEYS`); the UPDATE is skipped
    when none of their task_ids was stored before (a batch of new executions)."""
    if await connection.fetchval(LOCK_KEYS):
        await connection.execute(UPDATE_STORED)
    await connection.execute(INSERT_NEW)


async def prepare_batch(
    records: Sequence[RecordInput],
    embeddings: Sequence[np.ndarray] | np.ndarray | None,
    *,
    skip_invalid: bool,
    redactor: Redactor | None,
    embed: Embed,
) -> list[tuple[ExecutionRecord, np.ndarray]]:
    """What a batch stores: the valid records, secrets redacted, each with its checked
    embedding, one entry per task_id. A record the redactor changed is embedded from its
    redacted text even when ``embeddings`` were given: a vector of the original text would
    carry what was redacted into the index."""
    valid, kept = validate_batch(records, skip_invalid=skip_invalid)
    if embeddings is not None and len(embeddings) != len(records):
        raise ArgumentError(f"{len(embeddings)} embeddings given for {len(records)} records")
    if not valid:
        return []
    redacted = [redact_record(r, redactor) for r in valid] if redactor else valid
    if embeddings is None:
        vectors = list(await embed([r.embedding_text() for r in redacted]))
    else:
        vectors = [embeddings[i] for i in kept]
        changed = [n for n, (a, b) in enumerate(zip(valid, redacted, strict=True)) if a is not b]
        if changed:
            again = await embed([redacted[n].embedding_text() for n in changed])
            for n, vector in zip(changed, again, strict=True):
                vectors[n] = vector
    checked = [check_embedding(v, r.task_id) for r, v in zip(redacted, vectors, strict=True)]
    return latest_per_task(redacted, checked)


def validate_batch(
    records: Sequence[RecordInput], *, skip_invalid: bool
) -> tuple[list[ExecutionRecord], list[int]]:
    """The valid records and their positions; an invalid one raises or is skipped."""
    if isinstance(records, ExecutionRecord | Mapping | str):
        raise TypeError("store_executions takes a sequence of records")
    valid: list[ExecutionRecord] = []
    kept: list[int] = []
    for index, item in enumerate(records):
        try:
            record = (
                item if isinstance(item, ExecutionRecord) else ExecutionRecord.model_validate(item)
            )
        except ValidationError as exc:
            task_id = item.get("task_id", "?") if isinstance(item, Mapping) else "?"
            message = f"record #{index} (task_id {task_id}) is invalid: {exc}"
            if not skip_invalid:
                raise InvalidRecordError(message) from exc
            logger.warning("skipped %s", message)
            continue
        valid.append(record)
        kept.append(index)
    return valid, kept
