"""``orb-learning similar | tiers | pools | patterns | stats``: the store's answers on a
terminal, or as JSON for scripts."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import (
    add_json_flag,
    non_negative_int,
    open_database,
    positive_int,
    show,
    show_json,
    similarity,
)

if TYPE_CHECKING:
    from ..database import LearningDatabase

SIMILAR = ["similarity", "task_type", "repo", "model_tier", "success", "timestamp",
           "task_description", "solution_summary"]  # fmt: skip
TIERS = ["model_tier", "task_type", "total_executions", "success_rate", "avg_duration",
         "avg_cost", "avg_quality"]  # fmt: skip
POOLS = ["pool_type", "total_tasks", "success_rate", "avg_duration", "avg_cost"]
PATTERNS = ["solution_summary", "usage_count", "success_rate", "avg_quality", "repos"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    similar = commands.add_parser("similar", help="executions similar to a task description")
    similar.add_argument("text", help="the task description to compare with")
    _add_repo(similar)
    similar.add_argument(
        "--limit", type=positive_int, default=10, metavar="N", help="most executions shown"
    )
    _add_days_back(similar, 90)
    similar.add_argument(
        "--threshold",
        type=similarity,
        default=0.7,
        metavar="SIM",
        help="least cosine similarity, -1 to 1",
    )
    similar.set_defaults(handler=_similar)
    for name, days, handler, what in (
        ("tiers", 30, _tiers, "model tier performance"),
        ("pools", 7, _pools, "worker pool performance"),
    ):
        parser = commands.add_parser(name, help=what)
        _add_repo(parser)
        _add_days_back(parser, days)
        _add_fresh_flag(parser)
        parser.set_defaults(handler=handler)
    patterns = commands.add_parser("patterns", help="top solution patterns")
    _add_repo(patterns)
    patterns.add_argument(
        "--min-usage", type=non_negative_int, default=5, metavar="N", help="least uses"
    )
    patterns.add_argument(
        "--limit", type=positive_int, default=10, metavar="N", help="most patterns shown"
    )
    _add_fresh_flag(patterns)
    patterns.set_defaults(handler=_patterns)
    stats = commands.add_parser("stats", help="row counts, sizes, date range, view freshness")
    add_json_flag(stats)
    stats.set_defaults(handler=_stats)
    for parser in (similar, patterns, *_windowed(commands)):
        add_json_flag(parser)


def _add_repo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", help="only this repository's executions (default: all)")


def _add_days_back(parser: argparse.ArgumentParser, days: int) -> None:
    parser.add_argument(
        "--days-back",
        type=non_negative_int,
        default=days,
        metavar="DAYS",
        help="only executions of the last DAYS days",
    )


def _windowed(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    return [commands.choices["tiers"], commands.choices["pools"]]


def _add_fresh_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--views-only",
        dest="fresh",
        action="store_false",
        help="read the materialized views alone (skip rows stored since the last refresh)",
    )


async def _similar(args: argparse.Namespace) -> int:
    async with open_database(args, needs_model=True) as db:
        rows = await db.find_similar_executions(
            args.text,
            repo=args.repo,
            limit=args.limit,
            days_back=args.days_back,
            threshold=args.threshold,
        )
        hint = None if rows or args.json else await _why_none(db, args)
    show(args, rows, SIMILAR)
    if hint:
        print(hint)
    return 0


async def _why_none(db: LearningDatabase, args: argparse.Namespace) -> str:
    """What the filters left and how close the closest execution came, so that an empty
    answer says which filter to loosen."""
    from .._arguments import history_days

    scope = f"the last {args.days_back} days{f' of repo {args.repo!r}' if args.repo else ''}"
    async with db.connection() as connection:
        count = await connection.fetchval(
            WINDOW_COUNT_SQL, args.repo, min(args.days_back, history_days())
        )
    if not count:
        loosen = "a larger --days-back" + (", or drop --repo" if args.repo else "")
        return f"No executions in {scope}: try {loosen}."
    closest = await db.find_similar_executions(
        args.text, repo=args.repo, limit=1, days_back=args.days_back, threshold=-1.0
    )
    best = closest[0]["similarity"] if closest else None
    nearest = f"; the closest has similarity {best:.3f}" if best is not None else ""
    loosen = "lower --threshold, widen --days-back" + (" or drop --repo" if args.repo else "")
    return (
        f"None of the {count:,} executions in {scope} reaches similarity "
        f"{args.threshold:g}{nearest}: {loosen}."
    )


WINDOW_COUNT_SQL = """\
SELECT count(*) FROM executions
WHERE ($1::text IS NULL OR repo = $1)
  AND "timestamp" >= now() - make_interval(hours => 24 * $2::int)"""


async def _tiers(args: argparse.Namespace) -> int:
    async with open_database(args) as db:
        rows = await db.get_tier_performance(args.repo, args.days_back, fresh=args.fresh)
    show(args, rows, TIERS)
    return 0


async def _pools(args: argparse.Namespace) -> int:
    async with open_database(args) as db:
        rows = await db.get_pool_performance(args.repo, args.days_back, fresh=args.fresh)
    show(args, rows, POOLS)
    return 0


async def _patterns(args: argparse.Namespace) -> int:
    async with open_database(args) as db:
        rows = await db.get_solution_patterns(
            args.repo, args.min_usage, args.limit, fresh=args.fresh
        )
    show(args, rows, PATTERNS)
    return 0


STATS_SQL = """\
SELECT (SELECT count(*) FROM executions) AS executions,
       (SELECT count(*) FROM feedback) AS feedback,
       (SELECT count(*) FROM telemetry_dead_letters) AS dead_letters,
       (SELECT min("timestamp") FROM executions) AS first_execution,
       (SELECT max("timestamp") FROM executions) AS last_execution,
       (SELECT sum(pg_table_size(relid)) FROM ({leaves}) t)
           AS table_bytes,  -- the partitions' when partitioned (the parent holds no rows)
       (SELECT sum(pg_indexes_size(relid)) FROM ({leaves}) t) AS index_bytes,
       (SELECT sum(pg_total_relation_size(relid)) FROM ({leaves}) t) AS total_bytes,
       pg_database_size(current_database()) AS database_bytes"""


async def _stats(args: argparse.Namespace) -> int:
    from .._partition_routines import leaves

    async with open_database(args) as db:
        async with db.connection() as connection:
            totals = dict(await connection.fetchrow(STATS_SQL.format(leaves=leaves())))
        freshness = await db.view_freshness()
    if args.json:
        show_json({**totals, "views": freshness})
        return 0
    rows = [{"metric": key, "value": _human(key, value)} for key, value in totals.items()]
    show(args, rows, ["metric", "value"])
    print()
    show(args, freshness, ["view_name", "last_refreshed_at", "age", "rows", "watermark"])
    return 0


def _human(key: str, value: object) -> object:
    if key.endswith("_bytes") and isinstance(value, int):
        return f"{value / 1024 / 1024:,.1f} MiB"
    return value
