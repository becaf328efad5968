"""What the subcommands share: where the database is, and how results are printed."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tables import render

if TYPE_CHECKING:
    from ..database import LearningDatabase


async def resolve_dsn(args: argparse.Namespace) -> str:
    """The URL to work on: --dsn / ORB_LEARNING_DATABASE_URL, else the embedded server
    (started if needed)."""
    from ..config import Settings
    from ..dsn import asyncpg_dsn

    settings = Settings.resolve(args.dsn, database_path=args.data_dir)
    if settings.dsn is not None:
        return asyncpg_dsn(settings.dsn)
    from .. import embedded

    return await embedded.start(Path(settings.data_dir))


def open_database(args: argparse.Namespace, *, needs_model: bool = False) -> LearningDatabase:
    """A LearningDatabase for a command; the model loads only if the command embeds."""
    from ..database import LearningDatabase

    return LearningDatabase(args.dsn, database_path=args.data_dir, preload_model=needs_model)


def non_negative_int(text: str) -> int:
    """argparse type: 0, 1, 2... (the usage line and this message, never a traceback)."""
    return _bounded_int(text, 0)


def positive_int(text: str) -> int:
    """argparse type: 1, 2, 3..."""
    return _bounded_int(text, 1)


def _bounded_int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def similarity(text: str) -> float:
    """argparse type: a cosine similarity threshold in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [-1, 1], got {value}")
    return value


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON only, for scripts")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def show(
    args: argparse.Namespace,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
) -> None:
    """A table on a terminal, or the rows as JSON alone on stdout with --json."""
    if getattr(args, "json", False):
        print(json.dumps([dict(row) for row in rows], default=_plain, indent=2))
        return
    if title:
        print(title)
    print(render(rows, columns))


def show_json(value: Any) -> None:
    print(json.dumps(value, default=_plain, indent=2))
