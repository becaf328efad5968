"""``orb-learning refresh``: the view refresh job as a process (sidecar or cron), and the
freshness of the views."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from datetime import timedelta
from typing import TYPE_CHECKING

from .tables import render

if TYPE_CHECKING:
    from ..database import LearningDatabase

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """``90``, ``30s``, ``5m``, ``1h``, ``1d`` -> a positive timedelta (argparse type)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (e.g. 30s, 5m, 1h)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "refresh",
        help="refresh the analytics views once, or every --every (a sidecar)",
        description="Runs orb_learning_refresh_views() once, or every --every until SIGTERM or "
        "Ctrl-C (which stop it after the refresh in progress). Several may run at once: "
        "one refreshes per tick, the others skip.",
    )
    parser.add_argument(
        "--every", type=duration, metavar="INTERVAL", help="e.g. 5m: refresh until stopped"
    )
    parser.add_argument("--status", action="store_true", help="show the views' freshness only")
    parser.add_argument(
        "--install-cron",
        metavar="SCHEDULE",
        help="register the routine as a pg_cron job instead (e.g. '*/5 * * * *')",
    )
    parser.add_argument("--uninstall-cron", action="store_true", help="remove the pg_cron job")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    from ..database import LearningDatabase
    from ..refresh import install_cron_job, uninstall_cron_job

    database = LearningDatabase(args.dsn, database_path=args.data_dir, preload_model=False)
    async with database as db:
        if args.status:
            print(render(await db.view_freshness(consistency="primary"), _FRESHNESS))
        elif args.install_cron:
            async with db.connection() as connection:
                interval = args.every or timedelta(minutes=5)
                job = await install_cron_job(connection, args.install_cron, interval)
            print(f"pg_cron job {job} runs the refresh on '{args.install_cron}'")
        elif args.uninstall_cron:
            async with db.connection() as connection:
                removed = await uninstall_cron_job(connection)
            print("pg_cron job removed" if removed else "no pg_cron job to remove")
        elif args.every is None:
            results = await db.refresh_views()
            print(render([r.__dict__ for r in results], _RESULTS))
        else:
            await _run_every(db, args.every)
    return 0


async def _run_every(db: LearningDatabase, every: timedelta) -> None:
    refresher = db.start_refresher(every)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    print(f"refreshing the views every {every}; SIGTERM or Ctrl-C stops", flush=True)
    await stopped.wait()
    await refresher.stop()  # after the refresh in progress
    print(f"stopped: {refresher.refreshed} refreshes, {refresher.failures} failures", flush=True)


_FRESHNESS = ["view_name", "last_refreshed_at", "age", "rows", "watermark"]
_RESULTS = ["view_name", "status", "rows", "started_at", "finished_at", "error"]
