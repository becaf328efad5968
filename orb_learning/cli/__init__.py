"""The ``orb-learning`` command. Subcommands import what they need when they run, so that
``orb-learning --help`` answers at once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import OrbLearningError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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

    demo = commands.add_parser(
        "demo",
        help="store sample executions, then show similar ones and the three analytics",
        description="Migrates the database (the embedded server unless --dsn is given), "
        "stores N realistic sample executions with real embeddings, refreshes the views and "
        "prints similar executions and tier, pool and pattern performance.",
    )
    demo.add_argument("--rows", type=int, default=500, help="sample executions (default 500)")
    demo.add_argument(
        "--query",
        default="Optimize slow database queries",
        help="task description to find similar executions for",
    )
    from . import refresh

    refresh.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        if args.command == "demo":
            from .demo import run_demo

            asyncio.run(run_demo(args))
        elif args.command == "refresh":
            from . import refresh

            return asyncio.run(refresh.run(args))
        return 0
    except OrbLearningError as exc:
        if args.verbose:
            raise
        print(f"orb-learning: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
