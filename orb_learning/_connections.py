"""Pooled connections whose failures come out as the library's errors, and whose release
never turns a finished write into an error."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .errors import is_translatable, translate

if TYPE_CHECKING:
    import asyncpg

    from .config import Settings

logger = logging.getLogger("orb_learning")


async def open_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    """Migrate if the settings say so, refuse a database not at head, then open the pool
    (every connection with the library's codecs); driver errors as the library's."""
    import asyncpg

    from . import _codecs, migrations

    try:
        if settings.should_migrate:
            await migrations.upgrade(dsn)
        await migrations.check_revision(dsn)
        return await asyncpg.create_pool(
            dsn,
            min_size=settings.min_pool_size,
            max_size=settings.pool_size,
            command_timeout=settings.command_timeout,
            init=_codecs.init_connection,
        )
    except Exception as exc:
        if is_translatable(exc):
            raise translate(exc) from exc
        raise


@asynccontextmanager
async def pooled(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of ``pool``; driver errors come out as :class:`OrbLearningError`.

    Any failure to get a connection is the server's (a missing socket file is an
    ``OSError`` too); inside the block only the driver's and the network's errors are
    translated, so a caller's own file errors keep their type. A connection that breaks
    after the block succeeded (the pool's reset on release fails: the server died right
    after a commit) does not fail the call: its work is done, and the pool discards the
    connection. Raising there once reported a committed batch as lost."""
    try:
        connection = await pool.acquire()
    except Exception as exc:
        raise (translate(exc) if is_translatable(exc) else exc) from exc
    try:
        yield connection
    except BaseException as exc:
        await _release(pool, connection)
        if isinstance(exc, Exception) and from_driver(exc):
            raise translate(exc) from exc
        raise
    await _release(pool, connection)


async def _release(pool: asyncpg.Pool, connection: asyncpg.Connection) -> None:
    """Give the connection back; a broken one is discarded by the pool (logged, not raised)."""
    try:
        await pool.release(connection)
    except Exception as exc:
        logger.debug("a connection broke on release and was discarded: %s", exc)


def from_driver(exc: Exception) -> bool:
    """Raised by the driver or the network, not by the caller's own code in the block."""
    import asyncpg

    return isinstance(
        exc,
        asyncpg.PostgresError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | TimeoutError
        | ConnectionError,
    )
