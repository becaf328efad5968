"""The ``orb-learning`` command.

Each subcommand lives in a module of this package that defines ``add_parser(commands)``,
registering its parser with ``set_defaults(handler=run)`` where ``run(args)`` is a
coroutine returning the exit status. Heavy imports happen inside ``run``, so that
``orb-learning --help`` answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..errors import OrbLearningError, driver_error, translate

COMMAND_MODULES = (
    "demo",
    "db",
    "read",
    "routing",
    "refresh",
    "psql",
    "roles",
    "import_duckdb",
    "retention",
)
"""The modules of this package that add a subcommand, in the order of --help."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="orb-learning",
        description="Learning-analytics store for AI coding-agent orchestrators "
        "(PostgreSQL + pgvector).",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("ORB_LEARNING_DATABASE_URL"),
        help="PostgreSQL URL (default: $ORB_LEARNING_DATABASE_URL, else the embedded server)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="data directory of the embedded server (default: data/learning)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log and show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not hasattr(args, "psql_args"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.psql_args = extra  # `orb-learning psql -c ...`: psql's own arguments
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        status: int = asyncio.run(args.handler(args))
        return status
    except Exception as exc:
        error = _explain(exc)
        if error is None or args.verbose:
            raise
        print(f"orb-learning: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _explain(exc: Exception) -> OrbLearningError | None:
    """The one-line error a user should see, or None for a bug (shown as a traceback)."""
    if isinstance(exc, OrbLearningError):
        return exc
    cause = driver_error(exc)
    if cause is not None:
        return translate(cause)
    return None
