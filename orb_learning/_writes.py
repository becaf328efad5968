"""The write methods of :class:`~orb_learning.LearningDatabase`: they always go to the
primary (a replica is read-only), with secrets redacted before anything is embedded or
stored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import _dead_letters as dead_letters, _feedback as feedback, _store as store
from ._lifecycle import Lifecycle
from .models import ExecutionRecord, FeedbackRecord
from .redaction import Redactor, redact_feedback, redact_record

if TYPE_CHECKING:
    import numpy as np


class Writes(Lifecycle):
    """``store_execution(s)``, ``store_feedback`` and ``store_dead_letters``."""

    _redactor: Redactor | None

    async def store_execution(
        self, record: ExecutionRecord, *, embedding: np.ndarray | None = None
    ) -> None:
        """Redact secrets, embed the task description and upsert the row (same task_id: the
        row is updated). An ``embedding`` given for a record that held a secret is
        recomputed from the redacted text."""
        if not isinstance(record, ExecutionRecord):
            raise TypeError(f"store_execution takes an ExecutionRecord, got {type(record)!r}")
        service = self._embedding_service()
        redacted = redact_record(record, self._redactor) if self._redactor else record
        if embedding is None or redacted is not record:
            embedding = await service.embed_query(redacted.embedding_text())
        vector = store.check_embedding(embedding, record.task_id)
        async with self._connection() as connection:
            await store.upsert_one(connection, redacted, vector)

    async def store_executions(
        self,
        records: Sequence[store.RecordInput],
        *,
        embeddings: Sequence[np.ndarray] | np.ndarray | None = None,
        skip_invalid: bool = False,
    ) -> int:
        """Store a batch through binary COPY and one upsert; return the rows written.

        Records may be :class:`ExecutionRecord` or mappings (validated here). One invalid
        record fails the whole call, naming its task_id, unless ``skip_invalid`` is set:
        then it is logged and left out. Secrets are redacted first (see
        :mod:`orb_learning.redaction`). ``embeddings`` (one per record) skips the model,
        for imports of precomputed vectors. When a task_id appears twice, the later wins.
        """
        service = self._embedding_service()
        pairs = await store.prepare_batch(
            records,
            embeddings,
            skip_invalid=skip_invalid,
            redactor=self._redactor,
            embed=service.embed_many,
        )
        if not pairs:
            return 0
        async with self._connection() as connection:
            return await store.upsert_many(connection, pairs)

    async def store_feedback(self, record: FeedbackRecord) -> None:
        """Store user feedback on an execution (its comment redacted); the latest feedback
        sets the execution's ``user_rating`` and ``user_accepted``. Unknown task_id:
        :class:`UnknownExecutionError`."""
        if not isinstance(record, FeedbackRecord):
            raise TypeError(f"store_feedback takes a FeedbackRecord, got {type(record)!r}")
        if self._redactor is not None:
            record = redact_feedback(record, self._redactor)
        async with self._connection() as connection:
            await feedback.store_feedback(connection, record)

    async def store_dead_letters(self, letters: Sequence[dead_letters.DeadLetter]) -> int:
        """Keep telemetry that could not become an execution in ``telemetry_dead_letters``
        (its raw events redacted like records)."""
        if self._redactor is not None:
            letters = [dead_letters.redacted(letter, self._redactor) for letter in letters]
        async with self._connection() as connection:
            return await dead_letters.store_dead_letters(connection, letters)
