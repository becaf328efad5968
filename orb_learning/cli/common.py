"""What the subcommands share: where the database is, and how results are printed."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..config import Settings, asyncpg_dsn
from ..database import LearningDatabase
from .tables import render


async def resolve_dsn(args: argparse.Namespace) -> str:
    """The URL to work on: --dsn / ORB_LEARNING_DATABASE_URL, else the embedded server
    (started if needed)."""
    settings = Settings.resolve(args.dsn, database_path=args.data_dir)
    if settings.dsn is not None:
        return asyncpg_dsn(settings.dsn)
    from .. import embedded

    return await embedded.start(Path(settings.data_dir))


def open_database(args: argparse.Namespace, *, needs_model: bool = False) -> LearningDatabase:
    """A LearningDatabase for a command; the model loads only if the command embeds."""
    return LearningDatabase(args.dsn, database_path=args.data_dir, preload_model=needs_model)


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
