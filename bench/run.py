"""Benchmark of the analytics and of the view refresh job.

    python bench/run.py [--rows 100000] [--rows 1000000] [--dsn URL] [--calls 200] [--out bench/]

Without ``--dsn`` it starts an embedded PostgreSQL 18 + pgvector server in a temporary
directory and removes it at the end. Each level gets its own database. Progress goes to
stderr, the tables to stdout, and ``ANALYTICS.md`` and ``analytics.json`` to ``--out`` (rewritten
after each level, so a long run leaves what it has measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench import (
    capture,
    data,
    indexes,
    machine,
    plancache,
    plans,
    report,
    scenarios,
    sealing,
    server,
    viewindexes,
)
from bench.timing import log
from orb_learning._catalog import CURRENT_VIEWS

BENCH_DIR = Path(__file__).resolve().parent


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="rows per level (repeat)")
    parser.add_argument("--dsn", help="a server of your own (needs CREATE DATABASE, pgvector)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per API case")
    parser.add_argument("--direct-calls", type=int, default=20, help="timed direct aggregates")
    parser.add_argument(
        "--budget", type=float, default=10.0, help="seconds per case before fewer calls are taken"
    )
    parser.add_argument("--refresh-runs", type=int, default=3, help="timed refreshes")
    parser.add_argument(
        "--trigger-batches", type=int, default=5, help="batches per case of the trigger cost"
    )
    parser.add_argument("--batch", type=int, default=20_000, help="rows per store_executions")
    parser.add_argument("--tail-fraction", type=float, default=0.001, help="live tail / rows")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where ANALYTICS.md goes")
    parser.add_argument("--keep", action="store_true", help="keep the databases (with --dsn)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only rewrite ANALYTICS.md from an analytics.json",
    )
    parser.add_argument(
        "--view-index-experiment",
        action="store_true",
        help="also time the per-repo views with and without their time-bucket indexes (0004)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="JSON",
        help="a previous analytics.json (or results.json of bench/history) to compare with",
    )
    args = parser.parse_args(argv)
    if args.view_index_experiment:
        # It times revision 0004's indexes on the unsplit views; revision 0007 split each
        # view into parts (with those indexes on every part). Its last results:
        # bench/history/37b10ba/analytics.json.
        parser.error(
            "--view-index-experiment measured the views before revision 0007 split them into "
            "history and recent parts; its results are in bench/history/37b10ba/"
        )
    args.rows = args.rows or [100_000]
    return args


async def run_level(server_url: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    async with server.level_database(server_url, rows, keep=args.keep) as url:
        log(f"[{rows:,}] loading through store_executions (batches of {args.batch:,})")
        load = await data.load(url, rows, batch=args.batch, seed=args.seed)
        log(f"[{rows:,}] loaded at {load.rows_per_second:,.0f} rows/s; refreshing the views")
        refresh = await scenarios.refresh_job(url, args.refresh_runs)
        connection = await asyncpg.connect(url)
        try:
            # As autovacuum does within a minute of the first refresh; measuring before
            # that would time plans made without statistics (and autovacuum mid-run).
            await connection.execute(f"ANALYZE {', '.join(v.name for v in CURRENT_VIEWS)}")
            sizes = await scenarios.sizes(connection)
            async with data.open_database(url) as db:
                tail_count = max(1, round(rows * args.tail_fraction))
                records, vectors = data.tail_records(tail_count, seed=args.seed + 1)
                await db.store_executions(records, embeddings=vectors)
                live_tail = await scenarios.live_tail_rows(connection)
                log(f"[{rows:,}] {tail_count} rows in the live tail; timing the API")
                captured = await capture.capture_all(url)
                api = await scenarios.measure_api(
                    db, url, captured, calls=args.calls, budget=args.budget
                )
                plan_cache = await plancache.plan_cache(db)
                plan_cache_order = await plancache.plan_cache_order(url)
                log(f"[{rows:,}] timing the direct aggregates on the base table")
                direct = await scenarios.measure_direct(connection, calls=args.direct_calls)
                agreement = await scenarios.agreement(db, connection)
                api_plans = await plans.api_plans(connection, captured)
                estimates = await plans.tail_estimates(connection)
                log(f"[{rows:,}] the live tail's index")
                variants = await indexes.tail_index_experiment(
                    db, url, captured, calls=args.calls, budget=args.budget, log=log
                )
                view_indexes = None
                if args.view_index_experiment:
                    log(f"[{rows:,}] an index on each view's time bucket, with and without")
                    view_indexes = await viewindexes.view_index_experiment(
                        db, url, captured, calls=args.calls, budget=args.budget
                    )
            log(f"[{rows:,}] the seal advance, a late row, the triggers' cost")
            sealed = {
                "seal_advance": await sealing.seal_advance(url, args.refresh_runs),
                "trigger_cost": await sealing.trigger_cost(
                    url, batches=args.trigger_batches, size=1_000, seed=args.seed
                ),
            }
        finally:
            await connection.close()
    return {
        "rows": rows,
        "load": load.as_dict(),
        "refresh": refresh.as_dict(),
        "live_tail_rows": live_tail,
        "tail_batch": tail_count,
        "api": report.measured(api),
        "plan_cache": plan_cache,
        "plan_cache_order_ms": plan_cache_order,
        "direct": report.measured(direct),
        "agreement": agreement,
        "plans": api_plans,
        "tail_estimates": estimates,
        "sizes": sizes,
        "tail_index": [v.as_dict() for v in variants],
        "view_indexes": view_indexes.as_dict() if view_indexes else None,
        "sealing": sealed,
        "level_seconds": time.perf_counter() - started,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.machine(),
        "library": machine.library(),
        "parameters": {
            "rows": args.rows,
            "calls": args.calls,
            "direct_calls": args.direct_calls,
            "budget_seconds_per_case": args.budget,
            "warmup_calls": 10,
            "refresh_runs": args.refresh_runs,
            "batch": args.batch,
            "tail_fraction": args.tail_fraction,
            "seed": args.seed,
            "server": "--dsn" if args.dsn else "embedded (temporary directory)",
        },
        "levels": [],
    }
    if args.compare:
        results["previous"] = report.summary(json.loads(args.compare.read_text()), args.compare)
    with server.server(args.dsn) as server_url:
        results["server"] = await machine.server(server_url)
        for rows in args.rows:
            level = await run_level(server_url, rows, args)
            results["levels"].append(level)
            print(report.level_text(level), flush=True)
            write(results, args.out)
            log(f"[{rows:,}] done in {level['level_seconds']:.0f} s")
    print(report.headline_text(results), flush=True)
    return results


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "analytics.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "ANALYTICS.md").write_text(report.markdown(results))


def render(path: Path, out: Path) -> None:
    results = json.loads(path.read_text())
    (out / "ANALYTICS.md").write_text(report.markdown(results))
    print(report.headline_text(results))


if __name__ == "__main__":
    arguments = parse()
    if arguments.render:
        render(arguments.render, arguments.out)
    else:
        asyncio.run(main(arguments))
