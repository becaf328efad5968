"""What the operations need from the store, as protocols: bulk loads, retention, reclaim and
the DuckDB import take any object that lends connections (and stores batches), such as a
:class:`~orb_learning.LearningDatabase`, without importing the facade that calls them."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

    from ._store import RecordInput


class ConnectionSource(Protocol):
    """Lends a pooled connection with the library's codecs and error translation."""

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...


class RecordStore(ConnectionSource, Protocol):
    """A connection source that also stores batches of executions (validated, redacted,
    embedded) as :meth:`LearningDatabase.store_executions` does."""

    async def store_executions(
        self,
        records: Sequence[RecordInput],
        *,
        embeddings: Sequence[np.ndarray] | np.ndarray | None = None,
        skip_invalid: bool = False,
    ) -> int: ...
