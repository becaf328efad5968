"""``orb-learning db ...``: the schema's lifecycle through Alembic's own API."""

from __future__ import annotations

import argparse
import sys

from ..dsn import redact
from .common import add_json_flag, resolve_dsn, show, show_json


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("db", help="migrate, inspect, validate or reset the schema")
    actions = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="alembic upgrade (default: head)")
    upgrade.add_argument(
        "revision", nargs="?", default="head", help="the revision to reach (default: head)"
    )
    downgrade = actions.add_parser("downgrade", help="alembic downgrade REVISION (e.g. base, -1)")
    downgrade.add_argument("revision", help="the revision to go back to: an id, base or -N")
    actions.add_parser("current", help="the database's revision")
    actions.add_parser("history", help="the migrations, newest first")
    check = actions.add_parser("validate", help="check everything the store needs; exit 1 if not")
    add_json_flag(check)
    vacuum = actions.add_parser(
        "vacuum",
        help="VACUUM (ANALYZE) executions, after a large DELETE of your own",
        description="VACUUM (ANALYZE) the executions table. After deleting a few percent of "
        "the rows, pass --rebuild-index: rebuilding the HNSW index concurrently first is "
        "faster than VACUUM's repair of the graph. Readers and writers go on meanwhile.",
    )
    vacuum.add_argument(
        "--rebuild-index", action="store_true", help="REINDEX the HNSW index CONCURRENTLY first"
    )
    partitions = actions.add_parser(
        "partitions",
        help="partition executions by month (--convert), create the partitions missing, list them",
        description="With --convert, partition executions by month, online (the rows are "
        "copied in committed batches, resumable; then one short swap): executions is one "
        "table until then. Then create the partitions for the current period and AHEAD more, "
        "and for every period with rows in the default partition (moving them), and list "
        "them. The refresher creates partitions on every tick.",
    )
    partitions.add_argument(
        "--convert", action="store_true", help="partition executions first (decision 0011)"
    )
    partitions.add_argument(
        "--ahead", type=int, default=3, help="periods to create ahead of the current one"
    )
    partitions.add_argument(
        "--every",
        choices=("day", "week", "month"),
        default=None,
        help="the period of new partitions from now on (default: the newest partition's)",
    )
    add_json_flag(partitions)
    reset = actions.add_parser("reset", help="drop everything and migrate again (asks first)")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    from .. import migrations

    dsn = await resolve_dsn(args)
    action = args.db_command
    if action == "upgrade":
        await migrations.upgrade(dsn, args.revision)
        print(f"upgraded to {await migrations.current_revision(dsn)}")
    elif action == "downgrade":
        await migrations.downgrade(dsn, args.revision)
        print(f"downgraded to {await migrations.current_revision(dsn) or 'base'}")
    elif action == "current":
        current = await migrations.current_revision(dsn)
        head = migrations.head_revision()
        print(f"{current or 'base (not migrated)'}{' (head)' if current == head else ''}")
    elif action == "history":
        await migrations.run_command(dsn, "history", verbose=False)
    elif action == "validate":
        return await _validate(args, dsn)
    elif action == "reset":
        return await _reset(args, dsn)
    elif action == "vacuum":
        await _vacuum(args, dsn)
    elif action == "partitions":
        await _partitions(args, dsn)
    return 0


async def _partitions(args: argparse.Namespace, dsn: str) -> None:
    import asyncpg

    from ..partitions import convert_table, create_partitions, list_partitions

    if args.convert and await convert_table(dsn) and not args.json:
        print("executions is now partitioned by month")
    connection = await asyncpg.connect(dsn)
    try:
        created = await create_partitions(connection, ahead=args.ahead, every=args.every)
        listed = await list_partitions(connection)
    finally:
        await connection.close()
    if args.json:
        show_json(
            {"created": [c.to_dict() for c in created], "partitions": [p.to_dict() for p in listed]}
        )
        return
    for item in created:
        moved = (
            f", {item.moved_rows} rows moved from the default partition" if item.moved_rows else ""
        )
        print(
            f"created {item.name} [{item.range_start:%Y-%m-%d}, {item.range_end:%Y-%m-%d}){moved}"
        )
    rows = [
        {
            "partition": p.name,
            "from": "" if p.range_start is None else f"{p.range_start:%Y-%m-%d}",
            "to": "" if p.range_end is None else f"{p.range_end:%Y-%m-%d}",
            "period": p.period or ("default" if p.is_default else "clipped"),
            "rows (estimate)": p.rows_estimate,
        }
        for p in listed
    ]
    if not rows:
        print("executions is one table: `orb-learning db partitions --convert` partitions it")
        return
    show(args, rows, ["partition", "from", "to", "period", "rows (estimate)"])


async def _vacuum(args: argparse.Namespace, dsn: str) -> None:
    from ..database import LearningDatabase
    from ..reclaim import after_delete

    async with LearningDatabase(dsn, preload_model=False) as db:
        outcome = await after_delete(db, deleted_rows=0, rebuild=args.rebuild_index)
    if outcome.dropped_leftovers:
        print(f"Dropped {outcome.dropped_leftovers} invalid index left by a failed rebuild.")
    print(outcome.summary())


async def _validate(args: argparse.Namespace, dsn: str) -> int:
    import asyncpg

    from .._validate import validate

    connection = await asyncpg.connect(dsn)
    try:
        checks = await validate(connection)
    finally:
        await connection.close()
    rows = [
        {"check": c.what, "status": "ok" if c.ok else "MISSING", "detail": c.detail} for c in checks
    ]
    missing = sum(not c.ok for c in checks)
    if args.json:
        show_json({"ok": missing == 0, "checks": rows})
    else:
        show(args, rows, ["check", "status", "detail"])
        print(f"\n{'all present' if not missing else f'{missing} missing'} ({redact(dsn)})")
    return 1 if missing else 0


async def _reset(args: argparse.Namespace, dsn: str) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            print("orb-learning: reset drops every table; pass --yes to confirm", file=sys.stderr)
            return 2
        answer = input(f"Drop all orb-learning data in {redact(dsn)} and recreate? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    from .. import migrations

    await migrations.downgrade(dsn, "base")
    await migrations.upgrade(dsn)
    print(f"reset: the schema is at {await migrations.current_revision(dsn)}, empty")
    return 0
