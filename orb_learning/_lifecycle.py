"""What every :class:`~orb_learning.LearningDatabase` has before its first query: the
connection pool (and the embedded server it may start), the embedding service, and their
opening and closing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from . import _connections as connections, _replicas as replicas, embedded
from .config import EMBEDDING_DIMENSION, Settings
from .dsn import asyncpg_dsn, redact
from .embeddings import AsyncEmbeddingService, Embedder, SentenceTransformerEmbedder
from .errors import NotInitializedError

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

    from . import refresh

logger = logging.getLogger("orb_learning")


class Lifecycle:
    """The pool, the embedding service and the lifecycle (``initialize``, ``close``,
    ``async with``) of a :class:`~orb_learning.LearningDatabase`."""

    def __init__(self, settings: Settings, embedder: Embedder | None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._pool: asyncpg.Pool | None = None
        self._embeddings: AsyncEmbeddingService | None = None
        self._dsn: str | None = settings.dsn
        self._lock = asyncio.Lock()
        self._refreshers: list[refresh.ViewRefresher] = []
        self._reads = replicas.ReadRouter(settings, self._connection)

    @property
    def initialized(self) -> bool:
        return self._pool is not None

    @property
    def dsn(self) -> str | None:
        """The server's URL with its password hidden (``None`` before an embedded start)."""
        return redact(self._dsn) if self._dsn else None

    async def initialize(self) -> None:
        """Connect (starting the embedded server if that is the source), check the schema
        revision, and load the embedding model. Idempotent."""
        async with self._lock:
            if self._pool is not None:
                return
            if self._embedder is None:  # kept: a retried initialize() must not reload it
                self._embedder = SentenceTransformerEmbedder(
                    self.settings.embedding_model, backend=self.settings.embedding_backend
                )
            embeddings = AsyncEmbeddingService(
                self._embedder,
                expected_dimension=EMBEDDING_DIMENSION,
                cache_size=self.settings.query_cache_size,
            )
            try:
                loading = [embeddings.start()] if self.settings.preload_model else []
                pool, *_ = await asyncio.gather(self._open_pool(), *loading)
                await self._reads.open()
            except BaseException:
                await embeddings.close()
                await self._reads.close()
                raise
            self._pool, self._embeddings = pool, embeddings
            logger.info("orb-learning ready on %s", self.dsn)

    async def close(self) -> None:
        """Close the pool and the embedding service. Idempotent."""
        async with self._lock:
            refreshers, self._refreshers = self._refreshers, []
            for refresher in refreshers:
                await refresher.stop()
            pool, self._pool = self._pool, None
            embeddings, self._embeddings = self._embeddings, None
            await self._reads.close()
            if pool is not None:
                await pool.close()
            if embeddings is not None:
                await embeddings.close()

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _open_pool(self) -> asyncpg.Pool:
        if self._dsn is None:
            self._dsn = await embedded.start(Path(self.settings.data_dir))
        return await connections.open_pool(self.settings, asyncpg_dsn(self._dsn))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; driver errors come out as :class:`OrbLearningError`
        (see :func:`orb_learning._connections.pooled`)."""
        if self._pool is None:
            raise NotInitializedError(
                "LearningDatabase not initialized: await initialize() (or use `async with`)"
            )
        async with connections.pooled(self._pool) as connection:
            yield connection

    def _reading(
        self, consistency: replicas.Consistency
    ) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A connection for a read: a healthy replica's, or the primary's when asked for
        (``consistency="primary"``: read-your-writes) or when none is usable."""
        return self._reads.reading(replicas.consistency(consistency))

    async def replica_status(self) -> list[dict[str, object]]:
        """Each read server's ``state``, ``lag_seconds`` and the primary's ``sender`` row
        streaming to it (see :mod:`._replicas`)."""
        return await self._reads.status()

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A pooled connection for SQL of your own (``async with db.connection() as c``),
        with the library's codecs (``vector``, ``jsonb``) and error translation."""
        return self._connection()

    def _embedding_service(self) -> AsyncEmbeddingService:
        if self._embeddings is None:
            raise NotInitializedError("LearningDatabase not initialized: await initialize()")
        return self._embeddings

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The embeddings ``store_executions`` would compute for ``texts`` (one row each,
        through the library's model, batching and cache): for a writer that embeds one batch
        while the previous one is written, then passes ``embeddings=``."""
        return await self._embedding_service().embed_many(texts)
