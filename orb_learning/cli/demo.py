"""``orb-learning demo``: the whole store in one run, on the embedded server by default."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from .common import positive_int
from .tables import render

if TYPE_CHECKING:
    from ..database import LearningDatabase


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="store sample executions, then show similar ones and the three analytics",
        description="Migrates the database (the embedded server unless --dsn is given), "
        "stores N realistic sample executions with real embeddings, refreshes the views and "
        "prints similar executions and tier, pool and pattern performance. The sample is "
        "the same on every run (fixed task ids): running it again updates those rows.",
    )
    demo.add_argument(
        "--rows", type=positive_int, default=500, metavar="N", help="sample executions"
    )
    demo.add_argument(
        "--query",
        default="Optimize slow database queries",
        help="task description to find similar executions for",
    )
    demo.set_defaults(handler=run_demo)


def _say(text: str) -> None:
    print(text, flush=True)


async def run_demo(args: argparse.Namespace) -> int:
    from .. import sample
    from ..database import LearningDatabase

    started = time.perf_counter()
    database = LearningDatabase(args.dsn, database_path=args.data_dir, migrate_on_start=True)
    _say("Starting PostgreSQL + pgvector and loading the embedding model...")
    async with database as db:
        _say(f"Connected to {db.dsn}")
        records = sample.generate(args.rows)
        written = 0
        for start in range(0, len(records), 100):
            written += await db.store_executions(records[start : start + 100])
            _progress(written, len(records))
        await db.refresh_views()
        total = await _count(db)
        _say(
            f"\nStored {written} sample executions (the same task ids on every run) and "
            f"refreshed the views; the database holds {total:,}.\n"
        )

        similar = await db.find_similar_executions(args.query, limit=5, days_back=365)
        _say(f'Executions similar to "{args.query}" (last 365 days, similarity >= 0.7):')
        _say(
            render(
                similar,
                [
                    "similarity",
                    "task_type",
                    "repo",
                    "model_tier",
                    "success",
                    "task_description",
                    "solution_summary",
                ],
            )
        )

        _say("\nModel tier performance, last 30 days:")
        _say(
            render(
                await db.get_tier_performance(days_back=30),
                [
                    "model_tier",
                    "task_type",
                    "total_executions",
                    "success_rate",
                    "avg_duration",
                    "avg_cost",
                    "avg_quality",
                ],
            )
        )

        _say("\nPool performance, last 7 days:")
        _say(
            render(
                await db.get_pool_performance(days_back=7),
                ["pool_type", "total_tasks", "success_rate", "avg_duration", "avg_cost"],
            )
        )

        _say("\nTop solution patterns (used at least 5 times):")
        _say(
            render(
                await db.get_solution_patterns(min_usage=5, limit=8),
                ["solution_summary", "usage_count", "success_rate", "avg_quality", "task_types"],
            )
        )
    _say(f"\nDone in {time.perf_counter() - started:.1f} s.")
    return 0


async def _count(db: LearningDatabase) -> int:
    async with db.connection() as connection:
        total: int = await connection.fetchval("SELECT count(*) FROM executions")
    return total


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    sys.stdout.write(
        f"\rStoring executions [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    )
    sys.stdout.flush()
