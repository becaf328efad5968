"""Alembic environment of orb-learning: async, through asyncpg.

The database URL comes from ``-x dsn=...``, else ``ORB_LEARNING_DATABASE_URL``, else a
connection handed over by :mod:`orb_learning.migrations` (``config.attributes["connection"]``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from orb_learning._routines import MIGRATION_LOCK_KEY
from orb_learning.dsn import server_settings, sqlalchemy_url
from orb_learning.schema import metadata

config = context.config
target_metadata = metadata


def _database_dsn() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("dsn")
        or config.attributes.get("dsn")
        or os.environ.get("ORB_LEARNING_DATABASE_URL")
    )
    if not url:
        raise SystemExit(
            "orb-learning: no database given. Set ORB_LEARNING_DATABASE_URL=postgresql://... "
            "or pass `alembic -x dsn=postgresql://... upgrade head`."
        )
    return url


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # Only the tables of our metadata are Alembic's to compare; the materialized views and
    # anything else living in the same database are not.
    return not (type_ == "table" and reflected and compare_to is None)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        include_object=_include_object,
        transaction_per_migration=True,
    )


@contextmanager
def _one_migrator_at_a_time(connection: Connection) -> Iterator[None]:
    """An advisory lock around the migrations: a second ``alembic upgrade`` (another replica
    starting) waits for the first to commit, then finds the database at head. Without it,
    two upgrades of an empty database raced to create the same types (``duplicate key
    value violates unique constraint "pg_type_typname_nsp_index"``)."""
    key = {"key": MIGRATION_LOCK_KEY}
    if connection.in_transaction():
        # orb_learning.migrations runs everything in one transaction it commits afterwards:
        # a transaction lock is released exactly then.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), key)
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
    connection.commit()  # the session lock outlives it; Alembic starts clean
    try:
        yield
    except BaseException:
        # The connection may be unusable: the lock then ends with the session, which the
        # engine closes right after.
        with suppress(Exception):
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
            connection.commit()
        raise
    connection.commit()  # what the migrations left open, then let the next one in
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
    connection.commit()


def _run_sync(connection: Connection) -> None:
    with _one_migrator_at_a_time(connection):
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


async def _run_async() -> None:
    dsn = _database_dsn()
    engine = create_async_engine(
        sqlalchemy_url(dsn), connect_args={"server_settings": server_settings(dsn)}
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=sqlalchemy_url(_database_dsn()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
