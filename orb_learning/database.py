"""``LearningDatabase``: the facade services use. Its pool, embedding service and lifecycle
come from :mod:`._lifecycle`, its writes from :mod:`._writes`; the SQL is delegated to
:mod:`._store`, :mod:`._search`, :mod:`._analytics` and :mod:`._recommend`. Reads take a
``consistency`` (a replica's connection by default, see :mod:`._replicas`).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast

from . import (
    _analytics as analytics,
    _arguments as arguments,
    _recommend as recommending,
    _search as search,
    config,
    refresh,
)
from ._replicas import Consistency
from ._writes import Writes
from .config import Settings
from .embeddings import Embedder
from .errors import ConfigurationError, NotInitializedError
from .redaction import Redactor, resolve as resolve_redactor
from .routing import RouteRecommendation
from .rows import (
    PoolPerformance,
    SimilarExecution,
    SolutionPattern,
    TierPerformance,
    ViewFreshness,
)

logger = logging.getLogger("orb_learning")


class LearningDatabase(Writes):
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
        otlp_max_body_bytes: int | None = None,
        read_dsns: Sequence[str] | None = None,
        max_replica_lag: float | None = None,
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
            otlp_max_body_bytes: the largest OTLP request ``orb-learning serve`` takes
                (``ORB_LEARNING_OTLP_MAX_BODY_BYTES``, default 16 MiB).
            read_dsns: streaming replicas for the reads (``ORB_LEARNING_READ_DATABASE_URLS``;
                ``[]``: none, whatever the environment says).
            max_replica_lag: seconds of replay lag past which a replica is skipped
                (``ORB_LEARNING_MAX_REPLICA_LAG``, default 30).
        """
        if isinstance(read_dsns, str):  # one URL would be read as a list of characters
            raise ConfigurationError("read_dsns takes a list of URLs, not one string")
        from_environment = {
            "embedding_backend": embedding_backend,
            "pool_size": pool_size,
            "otlp_max_body_bytes": otlp_max_body_bytes,
            "read_dsns": None if read_dsns is None else tuple(read_dsns),
            "max_replica_lag": max_replica_lag,
        }
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
        super().__init__(self.settings, embedder)
        self._redactor = resolve_redactor(redact, default=self.settings.redact_secrets)
        self._tuning = search.SearchTuning(
            ef_search=self.settings.ef_search,
            max_scan_tuples=self.settings.max_scan_tuples,
            exact_search_max_rows=self.settings.exact_search_max_rows,
        )
        self._estimates = search.PlannerEstimates()
        self._routes = recommending.RouteState(lambda: self._reading("replica"))
        self._rng = random.Random()

    async def close(self) -> None:
        """Stop the route estimates' background refits, then close the pool and the
        embedding service. Idempotent."""
        await self._routes.close()
        await super().close()

    async def settle_route_fits(self) -> None:
        """Wait for the route estimates' background refits running now: for repeatable
        evaluations (a service never needs it)."""
        await self._routes.settle()

    # -- reads -------------------------------------------------------------------------

    async def find_similar_executions(
        self,
        task_description: str,
        repo: str | None = None,
        limit: int = 10,
        days_back: int | None = 90,
        threshold: float = 0.7,
        *,
        consistency: Consistency = "replica",
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
        async with self._reading(consistency) as connection:
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

    async def recommend_route(
        self,
        task_description: str,
        *,
        task_type: str | None = None,
        repo: str | None = None,
        complexity_score: int | None = None,
        candidates: Sequence[tuple[str, str]] | None = None,
        min_success: float | None = None,
        cost_weight: float | None = None,
        explore: bool = False,
        days_back: int | None = 90,
        log: bool = True,
        rng: random.Random | None = None,
        consistency: Consistency = "replica",
    ) -> RouteRecommendation:
        """Which ``(model_tier, pool_type)`` should run the task, with each candidate's
        expected success (a posterior and its 90% interval), cost, duration and quality,
        from the task's nearest past executions and the tier performance of the window.
        Objectives: the most likely (default), the cheapest at least ``min_success``
        likely, or the best success minus ``cost_weight`` x cost; ``explore`` chooses by
        Thompson sampling (``rng`` makes it repeatable). ``log`` writes the recommendation
        to ``route_recommendations``; pass its ``recommendation_id`` with the execution.
        The reads (search, analytics, the model's fit) go where ``consistency`` says, the
        log row to the primary. See :mod:`orb_learning.routing`."""
        checked = recommending.request(
            task_description, task_type=task_type, repo=repo,
            complexity_score=complexity_score, candidates=candidates,
            min_success=min_success, cost_weight=cost_weight, explore=explore,
            days_back=days_back, log=log,
        )  # fmt: skip
        if self._redactor is not None:  # stored and searched as the descriptions were
            checked = replace(checked, task_description=self._redactor(task_description))
        query = await self._embedding_service().embed_query(checked.task_description)
        async with self._reading(consistency) as connection:
            made = await recommending.recommend(
                connection, query, checked, tuning=self._tuning, estimates=self._estimates,
                state=self._routes, rng=rng or self._rng,
            )  # fmt: skip
        if checked.log:
            async with self._connection() as connection:
                await recommending.log(connection, made, checked)
        return made

    async def get_tier_performance(
        self,
        repo: str | None = None,
        days_back: int = 30,
        *,
        fresh: bool = True,
        consistency: Consistency = "replica",
    ) -> list[TierPerformance]:
        """Per model tier and task type over the last ``days_back`` UTC days. ``fresh``
        adds the rows stored since the last refresh (see :mod:`orb_learning._analytics`)."""
        arguments.text("repo", repo, allow_none=True)
        window = arguments.days_back(days_back)
        async with self._reading(consistency) as connection:
            rows = await analytics.tier_performance(
                connection, repo=repo, days_back=window, fresh=bool(fresh)
            )
        return cast("list[TierPerformance]", rows)

    async def get_pool_performance(
        self,
        repo: str | None = None,
        days_back: int = 7,
        *,
        fresh: bool = True,
        consistency: Consistency = "replica",
    ) -> list[PoolPerformance]:
        """Per worker pool over the last ``days_back`` days (whole UTC hours)."""
        arguments.text("repo", repo, allow_none=True)
        window = arguments.days_back(days_back)
        async with self._reading(consistency) as connection:
            rows = await analytics.pool_performance(
                connection, repo=repo, days_back=window, fresh=bool(fresh)
            )
        return cast("list[PoolPerformance]", rows)

    async def get_solution_patterns(
        self,
        repo: str | None = None,
        min_usage: int = 5,
        limit: int = 10,
        *,
        fresh: bool = True,
        consistency: Consistency = "replica",
    ) -> list[SolutionPattern]:
        """Top solution patterns by success rate, then usage count."""
        arguments.text("repo", repo, allow_none=True)
        arguments.integer("min_usage", min_usage, minimum=0)
        arguments.integer("limit", limit, minimum=1)
        async with self._reading(consistency) as connection:
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

    async def view_freshness(self, *, consistency: Consistency = "replica") -> list[ViewFreshness]:
        """Per view: ``view_name``, ``watermark``, ``last_refreshed_at`` (the last
        successful refresh, None if never), ``age`` (a timedelta) and ``rows``. By default
        from the server the analytics read (a replica's copy of the refresh log, so the
        age includes its lag); ``consistency="primary"``: the primary's."""
        async with self._reading(consistency) as connection:
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
