"""Alembic, driven from Python: find the scripts, read the revision, upgrade.

Deploys run ``alembic upgrade head``; the embedded server (and callers who opt in with
``migrate_on_start``) are migrated from here, through Alembic's own API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from .dsn import redact, server_settings, sqlalchemy_url
from .errors import SchemaNotReadyError, driver_error, translate

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine


@cache
def script_location() -> Path:
    """The migration scripts: inside the installed wheel, else the source checkout's."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "_alembic", package_dir.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("orb-learning's Alembic scripts are missing from the installation")


def alembic_config(dsn: str | None = None) -> Config:
    """An Alembic Config for the packaged scripts, optionally bound to ``dsn``."""
    from alembic.config import Config

    ini = script_location().parent / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    if dsn is not None:
        config.attributes["dsn"] = dsn
    return config


@cache
def head_revision() -> str:
    """The revision this version of the library needs the database to be at."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"orb-learning migrations have {len(heads)} heads: {heads}")
    return heads[0]


async def upgrade(dsn: str, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on ``dsn``, from inside a running event loop."""
    await _run(dsn, "upgrade", revision)


async def downgrade(dsn: str, revision: str) -> None:
    """``alembic downgrade <revision>`` on ``dsn``."""
    await _run(dsn, "downgrade", revision)


async def run_command(dsn: str, action: str, *args: object, **kwargs: object) -> None:
    """Any ``alembic.command`` (``current``, ``history``...) on ``dsn``, sharing one
    connection with env.py, from inside a running event loop."""
    await _run(dsn, action, *args, **kwargs)


async def current_revision(dsn: str) -> str | None:
    """The database's revision, or None when it is not migrated."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        value: str | None = await connection.fetchval("SELECT version_num FROM alembic_version")
        return value
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await connection.close()


async def _run(dsn: str, action: str, *args: object, **kwargs: object) -> None:
    from alembic import command

    config = alembic_config(dsn)

    def run(sync_connection: object) -> None:
        config.attributes["connection"] = sync_connection
        getattr(command, action)(config, *args, **kwargs)

    # Not one transaction for all: env.py runs each revision in its own.
    async with engine(dsn) as sqlalchemy_engine, sqlalchemy_engine.connect() as connection:
        await connection.run_sync(run)
        await connection.commit()


@asynccontextmanager
async def engine(dsn: str) -> AsyncIterator[AsyncEngine]:
    """An SQLAlchemy engine on ``dsn`` with the library's server settings, for work done
    through SQLAlchemy (the migrations, the partition conversion): driver errors come out
    as the library's, and the engine is disposed of at the end."""
    from sqlalchemy.ext.asyncio import create_async_engine

    created = create_async_engine(
        sqlalchemy_url(dsn), connect_args={"server_settings": server_settings(dsn)}
    )
    try:
        yield created
    except Exception as exc:
        cause = driver_error(exc)
        if cause is None:
            raise
        raise translate(cause) from exc
    finally:
        await created.dispose()


async def check_revision(dsn: str) -> None:
    """Refuse a database that is not at this library's head revision."""
    head = head_revision()
    current = await current_revision(dsn)
    if current != head:
        state = "not migrated" if current is None else f"at revision {current}"
        raise SchemaNotReadyError(
            f"the database {redact(dsn)} is {state}; this orb-learning needs revision {head}: "
            "run `alembic upgrade head` with ORB_LEARNING_DATABASE_URL set "
            "(or pass migrate_on_start=True)"
        )
