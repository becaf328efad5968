"""Scratch databases for an evaluation: each fold and each replay starts from an empty,
migrated database (a copy of one migrated template), all dropped at the end. On a server
of the caller's (its role needs CREATEDB) or on an embedded server in a temporary
directory."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from .. import embedded, migrations
from ..dsn import asyncpg_dsn

NewDatabase = Callable[[], Awaitable[str]]


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def scratch_databases(server_url: str | None) -> AsyncIterator[NewDatabase]:
    """A factory of new migrated databases on ``server_url``'s server (None: embedded)."""
    if server_url is None:
        with tempfile.TemporaryDirectory(prefix="orb-learning-evaluate-") as directory:
            url = await embedded.start(Path(directory) / "data")
            async with _databases(url) as factory:
                yield factory
        return
    async with _databases(asyncpg_dsn(server_url)) as factory:
        yield factory


@asynccontextmanager
async def _databases(admin_url: str) -> AsyncIterator[NewDatabase]:
    import asyncpg

    prefix = f"orb_eval_{uuid.uuid4().hex[:8]}"
    template = f"{prefix}_template"
    made: list[str] = []
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{template}"')  # names made here, not input
        made.append(template)
        await migrations.upgrade(_with_database(admin_url, template))

        async def new() -> str:
            name = f"{prefix}_{len(made)}"
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            made.append(name)
            return _with_database(admin_url, name)

        yield new
    finally:
        for name in reversed(made):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
