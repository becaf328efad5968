"""``orb-learning retention``: archive executions older than N days to Parquet and delete
them in batches; ``--dry-run`` shows what would go, per month, and changes nothing."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from .common import positive_int
from .tables import render


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "retention",
        help="archive (Parquet) and delete executions older than --keep-days",
        description="Deletes the executions stamped more than --keep-days days ago, oldest "
        "first, in batches of --batch-size rows per transaction (their feedback goes with "
        "them). With --archive DIR, each batch is first written to Parquet under "
        "DIR/year=YYYY/month=MM/. An interrupted run loses nothing: run it again to finish. "
        "The analytics views drop the purged buckets at their next refresh. Then the table "
        "is vacuumed, after a concurrent rebuild of the HNSW index when 1% of the rows or "
        "more went (faster than VACUUM's repair of the graph); readers and writers go on.",
    )
    parser.add_argument(
        "--keep-days", type=_days, required=True, help="days of history to keep (0: none)"
    )
    parser.add_argument("--archive", metavar="DIR", help="archive to Parquet under DIR first")
    parser.add_argument(
        "--batch-size", type=positive_int, default=5000, metavar="N", help="rows per transaction"
    )
    parser.add_argument("--dry-run", action="store_true", help="report only, change nothing")
    parser.add_argument(
        "--no-reclaim",
        dest="reclaim",
        action="store_false",
        help="skip the VACUUM (and HNSW rebuild) after the deletes: leave it to autovacuum",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.set_defaults(handler=run)


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}")
    return value


async def run(args: argparse.Namespace) -> int:
    from ..database import LearningDatabase
    from ..retention import Retention

    progress = _progress if sys.stderr.isatty() and not args.dry_run else None
    database = LearningDatabase(args.dsn, database_path=args.data_dir, preload_model=False)
    async with database as db:
        retention = Retention(
            db,
            days_to_keep=args.keep_days,
            archive_path=args.archive,
            batch_size=args.batch_size,
            progress=progress,
            reclaim=args.reclaim,
        )
        result = await (retention.plan() if args.dry_run else retention.run())
    if progress is not None and result.batches:
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=_json_value))
        return 0
    verb = "Would delete" if result.dry_run else "Deleted"
    print(
        f"{verb} {result.deleted_count} executions stamped before "
        f"{result.cutoff:%Y-%m-%d %H:%M} UTC (keeping {result.days_cleaned} days), "
        f"with {result.feedback_deleted} feedback rows, and "
        f"{result.recommendations_deleted} route recommendations made before then."
    )
    months = [{"month": m, "executions": n} for m, n in result.months.items()]
    if months:
        print(render(months, ["month", "executions"]))
    if args.archive is None:
        print("No archive (--archive DIR to keep them as Parquet).")
    elif result.dry_run:
        print(f"Would archive {result.archived_count} rows under {args.archive}.")
        if result.pending_files:
            print(f"{result.pending_files} pending files of an interrupted run to settle.")
    else:
        print(
            f"Archived {result.archived_count} rows in {len(result.archive_files)} files "
            f"under {args.archive}."
        )
        if result.recovered_files or result.discarded_pending:
            print(
                f"Settled an interrupted run: {len(result.recovered_files)} files published, "
                f"{result.discarded_pending} discarded (their rows were still stored)."
            )
    if not result.dry_run and result.deleted_count:
        print("The analytics views drop these rows at their next refresh.")
    if result.reclaimed is not None:
        print(result.reclaimed.summary())
    return 0


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    sys.stderr.write(f"\rDeleting [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def _json_value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {value!r}")
