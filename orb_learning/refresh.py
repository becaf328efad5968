"""The scheduled refresh of the analytics views, around the database's one routine.

``orb_learning_refresh_views()`` (see :mod:`._routines`) does the work, takes the
single-flight lock and logs each refresh. This module calls it: once
(:func:`refresh_once`), on a schedule inside a service (:class:`ViewRefresher`), or from
pg_cron (:func:`install_cron_job`). A refresh that fails never takes the host down: it is
logged with its cause, recorded in ``view_refresh_log`` as soon as the server answers, and
retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._catalog import CURRENT_VIEWS
from ._routines import REFRESH_FUNCTION
from .errors import (
    ConfigurationError,
    DatabaseError,
    from_sqlstate,
    is_transient,
    is_translatable,
    translate,
)
from .retry import Backoff

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger("orb_learning.refresh")

ConnectionSource = Callable[[], AbstractAsyncContextManager["asyncpg.Connection"]]
CRON_JOB_NAME = "orb-learning-refresh-views"
_MAX_UNRECORDED = 100  # failures kept for the log while the server is away (oldest dropped)
DEFAULT_WATERMARK_LAG = timedelta(minutes=1)
"""Rows stamped up to this long before a refresh are still read live: telemetry is written
in batches, so a row often commits a little after the instant it describes."""


@dataclass(frozen=True)
class RefreshResult:
    """What the routine did to one materialized part: ``success``, ``failed``, ``fresh``
    (skipped: it was refreshed less than ``min_age`` ago), ``sealed`` (a history part left
    as it was: its seal did not move and nothing before it changed; not logged) or
    ``locked`` (another refresh was running)."""

    view_name: str | None
    status: str
    rows: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    watermark: datetime | None = None
    error: str | None = None


async def refresh_once(
    connection: asyncpg.Connection,
    *,
    min_age: timedelta = timedelta(0),
    watermark_lag: timedelta = DEFAULT_WATERMARK_LAG,
    wait: bool = False,
) -> list[RefreshResult]:
    """Run the routine once; ``wait`` queues behind a running refresh instead of skipping."""
    rows = await connection.fetch(
        f"SELECT * FROM {REFRESH_FUNCTION}($1, $2, $3)", min_age, watermark_lag, wait
    )
    return [RefreshResult(**dict(row)) for row in rows]


def failure(result: RefreshResult) -> DatabaseError:
    """The error of a part the routine reported as failed (its log says ``SQLSTATE: message``)."""
    error = result.error or "unknown error"
    sqlstate, _, text = error.partition(": ")
    message = f"refresh of {result.view_name} failed: {error}"
    if len(sqlstate) == 5 and sqlstate.isalnum() and text:
        return from_sqlstate(message, sqlstate)
    return DatabaseError(message)


async def record_failure(connection: asyncpg.Connection, started_at: datetime, cause: str) -> None:
    """Log a refresh that failed outside the routine (connection cut, server restart,
    statement timeout): one failed row per view, so the log tells the whole story."""
    await connection.executemany(
        "INSERT INTO view_refresh_log (view_name, started_at, finished_at, status, error) "
        "VALUES ($1, $2, now(), 'failed', $3)",
        [(view.name, started_at, cause[:2000]) for view in CURRENT_VIEWS],
    )


async def view_freshness(connection: asyncpg.Connection) -> list[dict[str, Any]]:
    """Per materialized part: its watermark (None before the first refresh: all history
    is live; a history part's is its seal), its last successful refresh and that refresh's
    age."""
    rows = await connection.fetch(
        """
        SELECT w.view_name, nullif(w.watermark, '-infinity') AS watermark,
               last.finished_at AS last_refreshed_at,
               now() - last.finished_at AS age, last.rows
        FROM view_watermarks w
        LEFT JOIN LATERAL (
            SELECT l.finished_at, l.rows FROM view_refresh_log l
            WHERE l.view_name = w.view_name AND l.status = 'success'
            ORDER BY l.finished_at DESC LIMIT 1
        ) last ON true
        ORDER BY w.view_name
        """
    )
    return [dict(row) for row in rows]


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {cause}"


class ViewRefresher:
    """Runs the refresh routine every ``every`` as an asyncio task, until :meth:`stop`.

    Several replicas may run one each: the routine's advisory lock lets one refresh while
    the others skip the tick (logged at debug), and views refreshed less than half an
    interval ago are skipped, so each view is refreshed once per interval. After a
    transient failure (the server away, a timeout) the next try comes after
    ``retry_after``, doubling up to ``every`` (the library's :class:`~orb_learning.retry.
    Backoff`); after any other failure, at the next tick: retrying sooner cannot help.
    """

    def __init__(
        self,
        connect: ConnectionSource,
        *,
        every: timedelta = timedelta(minutes=5),
        watermark_lag: timedelta = DEFAULT_WATERMARK_LAG,
        retry_after: timedelta = timedelta(seconds=1),
    ) -> None:
        if every <= timedelta(0):
            raise ConfigurationError(f"the refresh interval must be positive, got {every}")
        self._connect = connect
        self.every = every
        self.watermark_lag = watermark_lag
        self.retry_after = retry_after
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.refreshed = self.skipped = self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self._unrecorded: list[tuple[datetime, str]] = []

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> ViewRefresher:
        if not self.running:
            self._stopping.clear()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="orb-learning-view-refresher"
            )
        return self

    async def stop(self) -> None:
        """Stop after the refresh in progress, if any (never in the middle of one)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def tick(self) -> list[RefreshResult]:
        """One scheduled refresh (skipping views refreshed less than half an interval ago),
        after creating the time partitions missing (the current month and three ahead,
        and those of rows in the default partition)."""
        from .partitions import create_partitions

        async with self._connect() as connection:
            await create_partitions(connection)
            return await refresh_once(
                connection, min_age=self.every / 2, watermark_lag=self.watermark_lag
            )

    async def _run(self) -> None:
        while not self._stopping.is_set():
            delay = await self._tick_safely()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay.total_seconds())

    async def _tick_safely(self) -> timedelta:
        started_at = datetime.now(UTC)
        try:
            results = await self.tick()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate(exc) if is_translatable(exc) else exc  # a connection of yours
            return await self._failed(started_at, _describe(exc), transient=is_transient(error))
        self._account(results)
        self.consecutive_failures = 0
        await self._record_failures()
        return self.every

    def _account(self, results: list[RefreshResult]) -> None:
        for result in results:
            if result.status == "success":
                self.refreshed += 1
                logger.info("refreshed %s (%s rows)", result.view_name, result.rows)
            elif result.status == "failed":
                self.failures += 1
                self.last_error = result.error
                logger.warning("refresh of %s failed: %s", result.view_name, result.error)
            else:
                self.skipped += 1
                logger.debug(
                    "refresh of %s skipped: %s", result.view_name or "views", result.status
                )

    async def _failed(self, started_at: datetime, cause: str, *, transient: bool) -> timedelta:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = cause
        backoff = self.every
        if transient:
            policy = Backoff(
                initial=self.retry_after.total_seconds(),
                maximum=max(self.every, self.retry_after).total_seconds(),
                jitter=0.0,
            )
            backoff = timedelta(seconds=policy.delay(self.consecutive_failures - 1))
        logger.warning("view refresh failed (%s); retrying in %s", cause, backoff)
        self._unrecorded = [*self._unrecorded[-(_MAX_UNRECORDED - 1) :], (started_at, cause)]
        await self._record_failures()
        return backoff

    async def _record_failures(self) -> None:
        """Write the failures not yet in view_refresh_log; those of a server that was down
        are written once it answers again."""
        while self._unrecorded:
            started_at, cause = self._unrecorded[0]
            try:
                async with self._connect() as connection:
                    await record_failure(connection, started_at, cause)
            except Exception as exc:
                logger.debug("failed refresh not recorded yet: %s", _describe(exc))
                return
            self._unrecorded.pop(0)


async def install_cron_job(connection: asyncpg.Connection, schedule: str, every: timedelta) -> int:
    """Register the routine as a pg_cron job (replacing ours); returns the job id."""
    await _require_pg_cron(connection)
    command = f"SELECT {REFRESH_FUNCTION}(interval '{int(every.total_seconds() // 2)} seconds')"
    job_id: int = await connection.fetchval(
        "SELECT cron.schedule($1, $2, $3)", CRON_JOB_NAME, schedule, command
    )
    return job_id


async def uninstall_cron_job(connection: asyncpg.Connection) -> bool:
    """Remove our pg_cron job; False when there was none."""
    await _require_pg_cron(connection)
    exists = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1)", CRON_JOB_NAME
    )
    if exists:
        await connection.execute("SELECT cron.unschedule($1)", CRON_JOB_NAME)
    return bool(exists)


async def _require_pg_cron(connection: asyncpg.Connection) -> None:
    installed = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')"
    )
    if not installed:
        available = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron')"
        )
        hint = (
            "it is available: CREATE EXTENSION pg_cron (in the database named by "
            "cron.database_name) first"
            if available
            else "this server does not have it"
        )
        raise ConfigurationError(
            f"pg_cron is not installed ({hint}); run the app-side refresher instead: "
            "`orb-learning refresh --every 5m` or LearningDatabase.start_refresher()"
        )
