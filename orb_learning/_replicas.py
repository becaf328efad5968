"""Reads on streaming replicas: one pool per read server, a health and lag check at most
once a second per server, round robin over the healthy ones, and the primary when none
answers (logged once per outage). With no ``read_dsns`` every read is the primary's and
nothing here runs a query. Writes, refreshes, migrations and retention never come here.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from . import _connections as connections, _replica_senders as senders
from .dsn import asyncpg_dsn, redact
from .errors import ArgumentError, OrbLearningError

if TYPE_CHECKING:
    import asyncpg

    from .config import Settings

logger = logging.getLogger("orb_learning")

Consistency = Literal["replica", "primary"]
APPLICATION_NAME = "orb-learning-read"  # in the replica's pg_stat_activity
CHECK_EVERY = 1.0  # seconds between two checks of one server

# Lag is 0 when all WAL received is replayed: an idle primary stops the replay timestamp.
STATUS_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
            THEN 0.0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0.0)
       END::float8 AS lag_seconds
"""


@dataclass
class Replica:
    """One read server and what its last check found."""

    dsn: str
    pool: asyncpg.Pool | None = None
    state: str = "unknown"  # "streaming", "lagging", "down", "not a replica"
    lag_seconds: float | None = None
    checked_at: float = 0.0

    @property
    def usable(self) -> bool:
        return self.state == "streaming"


def consistency(value: object) -> Consistency:
    """``"replica"`` or ``"primary"``, else a one-line :class:`ArgumentError`."""
    if value not in ("replica", "primary"):
        raise ArgumentError(f"consistency must be 'replica' or 'primary' (got {value!r})")
    return value


class ReadRouter:
    """Chooses the server of each read."""

    def __init__(
        self,
        settings: Settings,
        primary: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
    ) -> None:
        self._settings = settings
        self._primary = primary
        self.replicas = [Replica(dsn) for dsn in settings.read_dsns]
        self._turn = itertools.count()
        self._fell_back = False

    async def open(self) -> None:
        """One lazy pool per replica: a replica down at start does not stop the service."""
        import asyncpg

        from . import _codecs

        for replica in self.replicas:
            if replica.pool is None:
                replica.pool = await asyncpg.create_pool(
                    asyncpg_dsn(replica.dsn),
                    min_size=0,
                    max_size=self._settings.pool_size,
                    command_timeout=self._settings.command_timeout,
                    init=_codecs.init_connection,
                    server_settings={"application_name": APPLICATION_NAME},
                )

    async def close(self) -> None:
        for replica in self.replicas:
            pool, replica.pool = replica.pool, None
            if pool is not None:
                pool.terminate() if replica.state == "down" else await pool.close()

    @asynccontextmanager
    async def reading(self, wanted: Consistency = "replica") -> AsyncIterator[asyncpg.Connection]:
        """A connection for a read: a healthy replica's unless ``wanted`` is primary."""
        replica = None if wanted == "primary" else await self._choose()
        if replica is None or replica.pool is None:
            async with self._primary() as connection:
                yield connection
            return
        entered = False
        try:
            async with connections.pooled(replica.pool) as connection:
                entered = True
                yield connection
            return
        except OrbLearningError as exc:
            if entered:
                raise
            self._down(replica, exc)  # died since its check: this read goes to the primary
        async with self._primary() as connection:
            yield connection

    async def _choose(self) -> Replica | None:
        if not self.replicas:
            return None
        start = next(self._turn)
        for offset in range(len(self.replicas)):
            replica = self.replicas[(start + offset) % len(self.replicas)]
            if time.monotonic() - replica.checked_at >= CHECK_EVERY:
                await self._check(replica)
            if replica.usable:
                if self._fell_back:
                    logger.info("reads are back on a replica (%s)", redact(replica.dsn))
                self._fell_back = False
                return replica
        if not self._fell_back:
            logger.warning("no read replica is usable: reads go to the primary")
        self._fell_back = True
        return None

    async def _check(self, replica: Replica) -> None:
        replica.checked_at = time.monotonic()
        try:
            row = await self._status_row(replica)
        except Exception as exc:
            self._down(replica, exc)
            return
        replica.lag_seconds = float(row["lag_seconds"])
        if not row["in_recovery"]:
            replica.state = "not a replica"
        elif replica.lag_seconds > self._settings.max_replica_lag:
            replica.state = "lagging"
        else:
            replica.state = "streaming"

    def _down(self, replica: Replica, exc: Exception) -> None:
        if replica.state != "down":
            logger.warning("read replica %s is down: %s", redact(replica.dsn), exc)
        replica.state, replica.lag_seconds = "down", None

    async def _status_row(self, replica: Replica) -> Any:
        if replica.pool is None:
            raise ConnectionError("pool closed")
        async with replica.pool.acquire(timeout=min(5.0, self._settings.command_timeout)) as c:
            return await c.fetchrow(STATUS_SQL, timeout=5.0)

    async def status(self) -> list[dict[str, Any]]:
        """Each read server now: ``dsn`` (password hidden), ``state``, ``lag_seconds`` and
        ``sender``, the primary's ``pg_stat_replication`` row streaming to it (write, flush
        and replay lag in seconds), ``None`` when not matched (see :mod:`._replica_senders`)."""
        streaming, primary_id = await self._senders()
        receivers = []
        for replica in self.replicas:
            await self._check(replica)
            receivers.append(await self._receiver(replica))
        matched = senders.match(receivers, streaming, primary_id)
        return [
            {
                "dsn": redact(replica.dsn),
                "state": replica.state,
                "lag_seconds": replica.lag_seconds,
                "sender": sender,
            }
            for replica, sender in zip(self.replicas, matched, strict=True)
        ]

    async def _senders(self) -> tuple[list[dict[str, Any]], Any]:
        """The primary's WAL senders and system identifier (none while it is away)."""
        try:
            async with self._primary() as connection:
                rows = await connection.fetch(senders.SENDERS_SQL)
                primary_id = await connection.fetchval(senders.SYSTEM_SQL)
        except OrbLearningError as exc:  # the replicas' own view still answers
            logger.warning("the primary did not list its WAL senders: %s", exc)
            return [], None
        return [dict(row) for row in rows], primary_id

    async def _receiver(self, replica: Replica) -> dict[str, Any] | None:
        """The replica's WAL receiver and identity; ``None`` when it does not answer."""
        if replica.state in ("down", "not a replica") or replica.pool is None:
            return None
        try:
            async with replica.pool.acquire(timeout=min(5.0, self._settings.command_timeout)) as c:
                row = await c.fetchrow(senders.RECEIVER_SQL, timeout=5.0)
        except Exception as exc:
            self._down(replica, exc)
            return None
        return dict(row)
