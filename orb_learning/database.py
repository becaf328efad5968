"""``LearningDatabase``: the facade services use. It owns the connection pool, the embedding
service and the lifecycle, and delegates the SQL to :mod:`._store`, :mod:`._search` and
:mod:`._analytics`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from . import (
    _analytics as analytics,
    _arguments as arguments,
    _connections as connections,
    _dead_letters as dead_letters,
    _feedback as feedback,
    _search as search,
    _store as store,
    config,
    embedded,
    refresh,
)
from .config import EMBEDDING_DIMENSION, Settings
from .dsn import asyncpg_dsn, redact
from .embeddings import AsyncEmbeddingService, Embedder, SentenceTransformerEmbedder
from .errors import (
    NotInitializedError,
)
from .models import ExecutionRecord, FeedbackRecord
from .redaction import Redactor, redact_feedback, redact_record, resolve as resolve_redactor
from .rows import (
    PoolPerformance,
    SimilarExecution,
    SolutionPattern,
    TierPerformance,
    ViewFreshness,
)

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

logger = logging.getLogger("orb_learning")


class LearningDatabase:
    """The learning store on PostgreSQL + pgvector.

    Where the server comes from: ``dsn``, else ``database_path`` (the data directory of an
    embedded server, so ``LearningDatabase(database_path="data/learning.db")`` of the first
    version runs unchanged), else ``ORB_LEARNING_DATABASE_URL``, else an embedded server
    under ``data/learning/``. An embedded server is migrated to head on start; an external
    one only with ``migrate_on_start=True``. Secrets in what is stored are replaced by typed
    placeholders unless ``redact=False`` (see :mod:`orb_learning.redaction`).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        database_path: str | os.PathLike[str] | None = None,
        embedding_model: str | None = None,
        embedding_backend: str | None = None,
        pool_size: int | None = None,
        min_pool_size: int = config.DEFAULT_MIN_POOL_SIZE,
        command_timeout: float = config.DEFAULT_COMMAND_TIMEOUT,
        migrate_on_start: bool | None = None,
        ef_search: int = config.DEFAULT_EF_SEARCH,
        max_scan_tuples: int = config.DEFAULT_MAX_SCAN_TUPLES,
        exact_search_max_rows: int | None = None,
        query_cache_size: int = config.DEFAULT_QUERY_CACHE_SIZE,
        preload_model: bool = True,
        watermark_lag: timedelta = config.DEFAULT_WATERMARK_LAG,
        redact: Redactor | bool | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """Each setting is a field of :class:`~orb_learning.config.Settings` (which says
        more). ``None`` takes the environment variable named there, else the default:

        Args:
            dsn: URL or libpq key/value string (``ORB_LEARNING_DATABASE_URL``; else embedded).
            database_path: the embedded server's data directory (``data/learning``).
            embedding_model: name or local directory (``ORB_LEARNING_EMBEDDING_MODEL``).
            embedding_backend: ``onnx-int8`` (default), ``onnx``, ``torch``
                (``ORB_LEARNING_EMBEDDING_BACKEND``).
            pool_size: most pooled connections (``ORB_LEARNING_POOL_SIZE``, default 4).
            migrate_on_start: upgrade to head in ``initialize()`` (default: embedded only).
            exact_search_max_rows: rows passing the filters up to which search is exact
                (default: 14 x the square root of the table's rows, at least 1,000).
            redact: ``True``, ``False`` or a text-in, text-out callable
                (``ORB_LEARNING_REDACT_SECRETS``, default on).
            embedder: an :class:`~orb_learning.Embedder` to use instead of the model.
        """
        from_environment = {"embedding_backend": embedding_backend, "pool_size": pool_size}
        self.settings = Settings.resolve(
            dsn,
            database_path=database_path,
            embedding_model=embedding_model,
            **{name: value for name, value in from_environment.items() if value is not None},
            min_pool_size=min_pool_size,
            command_timeout=command_timeout,
            migrate_on_start=migrate_on_start,
            ef_search=ef_search,
            max_scan_tuples=max_scan_tuples,
            exact_search_max_rows=exact_search_max_rows,
            query_cache_size=query_cache_size,
            preload_model=preload_model,
            watermark_lag=watermark_lag,
        )
        self._embedder = embedder
        self._redactor = resolve_redactor(redact, default=self.settings.redact_secrets)
        self._pool: asyncpg.Pool | None = None
        self._embeddings: AsyncEmbeddingService | None = None
        self._dsn: str | None = self.settings.dsn
        self._tuning = search.SearchTuning(
            ef_search=self.settings.ef_search,
            max_scan_tuples=self.settings.max_scan_tuples,
            exact_search_max_rows=self.settings.exact_search_max_rows,
        )
        self._estimates = search.PlannerEstimates()
        self._lock = asyncio.Lock()
        self._refreshers: list[refresh.ViewRefresher] = []

    # -- lifecycle ---------------------------------------------------------------------

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
            except BaseException:
                await embeddings.close()
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
            if pool is not None:
                await pool.close()
            if embeddings is not None:
                await embeddings.close()

    async def __aenter__(self) -> LearningDatabase:
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

    # -- writes ------------------------------------------------------------------------

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

    # -- reads -------------------------------------------------------------------------

    async def find_similar_executions(
        self,
        task_description: str,
        repo: str | None = None,
        limit: int = 10,
        days_back: int | None = 90,
        threshold: float = 0.7,
    ) -> list[SimilarExecution]:
        """Past executions most similar to ``task_description`` (cosine similarity of the
        task descriptions' embeddings), most similar first, each a
        :class:`~orb_learning.SimilarExecution`: a dict of the record's columns plus
        ``similarity``. ``days_back=None`` searches all history."""
        arguments.text("task_description", task_description)
        arguments.text("repo", repo, allow_none=True)
        arguments.integer("limit", limit, minimum=1)
        window = arguments.window_or_all(days_back)
        minimum = arguments.threshold(threshold)
        if self._redactor is not None:  # embedded as the stored descriptions were
            task_description = self._redactor(task_description)
        query = await self._embedding_service().embed_query(task_description)
        async with self._connection() as connection:
            found = await search.find_similar(
                connection,
                query,
                repo=repo,
                limit=limit,
                days_back=window,
                threshold=minimum,
                tuning=self._tuning,
                estimates=self._estimates,
            )
        return cast("list[SimilarExecution]", found)

    async def get_tier_performance(
        self, repo: str | None = None, days_back: int = 30, *, fresh: bool = True
    ) -> list[TierPerformance]:
        """Per model tier and task type over the last ``days_back`` UTC days. ``fresh``
        adds the rows stored since the last refresh (see :mod:`orb_learning._analytics`)."""
        arguments.text("repo", repo, allow_none=True)
        window = arguments.days_back(days_back)
        async with self._connection() as connection:
            rows = await analytics.tier_performance(
                connection, repo=repo, days_back=window, fresh=bool(fresh)
            )
        return cast("list[TierPerformance]", rows)

    async def get_pool_performance(
        self, repo: str | None = None, days_back: int = 7, *, fresh: bool = True
    ) -> list[PoolPerformance]:
        """Per worker pool over the last ``days_back`` days (whole UTC hours)."""
        arguments.text("repo", repo, allow_none=True)
        window = arguments.days_back(days_back)
        async with self._connection() as connection:
            rows = await analytics.pool_performance(
                connection, repo=repo, days_back=window, fresh=bool(fresh)
            )
        return cast("list[PoolPerformance]", rows)

    async def get_solution_patterns(
        self, repo: str | None = None, min_usage: int = 5, limit: int = 10, *, fresh: bool = True
    ) -> list[SolutionPattern]:
        """Top solution patterns by success rate, then usage count."""
        arguments.text("repo", repo, allow_none=True)
        arguments.integer("min_usage", min_usage, minimum=0)
        arguments.integer("limit", limit, minimum=1)
        async with self._connection() as connection:
            rows = await analytics.solution_patterns(
                connection, repo=repo, min_usage=min_usage, limit=limit, fresh=bool(fresh)
            )
        return cast("list[SolutionPattern]", rows)

    # -- refresh -----------------------------------------------------------------------

    async def refresh_views(self) -> list[refresh.RefreshResult]:
        """Refresh the views now, through the database's refresh routine (logged in
        ``view_refresh_log``). CONCURRENTLY: readers and writers never wait on it; a
        refresh already running elsewhere is waited for, then this one runs."""
        async with self._connection() as connection:
            results = await refresh.refresh_once(
                connection, watermark_lag=self.settings.watermark_lag, wait=True
            )
        failed = [r for r in results if r.status == "failed"]
        if failed:
            raise refresh.failure(failed[0])
        return results

    def start_refresher(
        self,
        every: timedelta = timedelta(minutes=5),
        *,
        retry_after: timedelta = timedelta(seconds=1),
    ) -> refresh.ViewRefresher:
        """Refresh the views every ``every`` in a background task until ``close()``.
        Safe on several replicas at once: one refreshes per tick, the others skip."""
        if self._pool is None:
            raise NotInitializedError("LearningDatabase not initialized: await initialize()")
        refresher = refresh.ViewRefresher(
            self._connection,
            every=every,
            watermark_lag=self.settings.watermark_lag,
            retry_after=retry_after,
        ).start()
        self._refreshers.append(refresher)
        return refresher

    async def view_freshness(self) -> list[ViewFreshness]:
        """Per view: ``view_name``, ``watermark``, ``last_refreshed_at`` (the last
        successful refresh, None if never), ``age`` (a timedelta) and ``rows``."""
        async with self._connection() as connection:
            rows = await refresh.view_freshness(connection)
        return cast("list[ViewFreshness]", rows)

    # -- retention ---------------------------------------------------------------------

    async def cleanup_old_executions(
        self,
        days_to_keep: int = 90,
        archive_path: str | os.PathLike[str] | None = None,
        *,
        reclaim: bool = True,
    ) -> dict[str, Any]:
        """The first version's retention: delete executions stamped more than
        ``days_to_keep`` days ago (their feedback with them), oldest first in batches,
        each archived first to Parquet under the ``archive_path`` directory when given.
        Returns ``archived_count``, ``deleted_count``, ``days_cleaned`` and details; an
        interrupted run loses nothing (see :mod:`orb_learning.retention`). Then, with
        ``reclaim``, VACUUM, after a concurrent rebuild of the HNSW index when 1% of the
        table or more went (see :mod:`orb_learning.reclaim`)."""
        from . import retention  # imports SQLAlchemy's metadata: only when used

        return await retention.cleanup_old_executions(
            self, days_to_keep, archive_path, reclaim=reclaim
        )
