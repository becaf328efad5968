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
from typing import Any, NoReturn

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
    "agents",
    "serve",
)
"""The modules of this package that add a subcommand, in the order of --help."""


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it has none or names it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or not action.option_strings
            or default in (None, False, True, argparse.SUPPRESS)
            or default == []
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one ``--help`` away) and the
    defaults in the help; subcommands' parsers are made of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

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
    try:
        return _main(argv)
    except BrokenPipeError:  # `orb-learning ... | head`: the reader left, nothing is wrong
        _silence_stdout()
        return 141  # as a shell reports a process that SIGPIPE ended (128 + 13)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not hasattr(args, "psql_args"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.psql_args = extra  # `orb-learning psql -c ...`: psql's own arguments
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    _show_progress_of(EXPORT_LOGGER)
    try:
        status: int = asyncio.run(args.handler(args))
        return status
    except BrokenPipeError:
        raise
    except Exception as exc:
        error = _explain(exc)
        if error is None or args.verbose:
            raise
        print(f"orb-learning: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not fail again
    (Python's documented answer to SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


EXPORT_LOGGER = "orb_learning.embeddings._onnx_export"
"""The embedding model's one-time export says when it starts and ends (INFO)."""


def _show_progress_of(name: str) -> None:
    """Its INFO lines on stderr, bare, whatever the log level (a progress line, not a log);
    once per process, however often ``main`` runs in it."""
    progress = logging.getLogger(name)
    if any(isinstance(h, _ProgressHandler) for h in progress.handlers):
        return
    handler = _ProgressHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    progress.setLevel(logging.INFO)
    progress.addHandler(handler)
    progress.propagate = False


class _ProgressHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`_show_progress_of` adds (recognised so that it is added once)."""


def _explain(exc: Exception) -> OrbLearningError | None:
    """The one-line error a user should see, or None for a bug (shown as a traceback)."""
    if isinstance(exc, OrbLearningError):
        return exc
    cause = driver_error(exc)
    if cause is not None:
        return translate(cause)
    return None
