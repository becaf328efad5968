"""``python -m bench``: every part of the benchmark in one run, one summary table.

    python -m bench                       # 1,000 and 100,000 rows (6-7 minutes here)
    python -m bench --million             # adds 1,000,000 rows (about 20 minutes more)
    python -m bench --only search --only analytics --rows 20000   # a quick look
    python -m bench --quick --only embeddings --out /tmp/b        # a smoke run
    python -m bench --compare OLD/results.json                    # beside a run you kept

One embedded server in a temporary directory (or ``--dsn``: a role allowed to CREATE
DATABASE on a server with pgvector), one machine-reference connection for every part; the
parts run one after the other (never two at once: they would compete for the cores):
embeddings, telemetry, then each level (a database loaded once, searched, then its
analytics). Progress goes to stderr, the summary table to stdout; ``results.json`` and
``RESULTS.md`` to ``--out`` (this directory), rewritten after each part.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bench import (
    analytics,
    data,
    embeddings,
    partitions,
    results,
    routing,
    search,
    server,
    summary,
    telemetry,
)
from bench.timing import LoadSampler, Reference, log

PARTS = ("search", "analytics", "routing", "partitions", "embeddings", "telemetry")
LEVEL_PARTS = {"search", "analytics", "routing", "partitions"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts")
    parser.add_argument("--million", action="store_true", help="add the 1,000,000-row level")
    parser.add_argument("--rows", type=int, action="append", help="levels instead (repeat)")
    parser.add_argument("--quick", action="store_true", help="few calls: a smoke run")
    parser.add_argument("--compare", type=Path, metavar="JSON", help="a previous results.json")
    parser.add_argument("--dsn", help="a server of your own instead of the embedded one")
    parser.add_argument("--out", type=Path, default=results.BENCH_DIR, help="results' folder")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the parts run in --out's results.json (noted there), keep the rest",
    )
    args = parser.parse_args(argv)
    args.only = args.only or list(PARTS)
    if not args.rows:
        args.rows = [1_000] if args.quick else [1_000, 100_000]
        args.rows += [1_000_000] if args.million else []
    return args


async def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    quick = args.quick
    out = results.merged(args.out, command, args.only) if args.merge else results.envelope(command)
    parts: dict[str, Any] = out["parts"]
    timing = out["merged"][-1] if args.merge else out  # a merge keeps the run's own figures
    began = time.time()
    with LoadSampler() as load, server.server(args.dsn) as url:
        timing["server"] = await results.server(url)
        reference = Reference(url)
        await reference.connect()

        async def part(name: str, measured: Awaitable[dict[str, Any]]) -> dict[str, Any]:
            started = time.time()
            figures = await measured
            figures["load_average"] = load.window(started)
            timing["seconds"] = round(time.time() - began)
            log(f"{name}: {time.time() - started:.0f} s, load {figures['load_average']}")
            return figures

        try:
            if "embeddings" in args.only:
                p = embeddings.QUICK if quick else embeddings.Parameters()
                parts["embeddings"] = await part("embeddings", embeddings.measure(reference, p))
                results.write(out, args.out)
            if "telemetry" in args.only:
                p = telemetry.QUICK if quick else telemetry.Parameters()
                parts["telemetry"] = await part("telemetry", telemetry.measure(url, reference, p))
                results.write(out, args.out)
            for rows in args.rows if LEVEL_PARTS & set(args.only) else []:
                await level(url, rows, args, reference, parts, part)
                results.write(out, args.out)
            if "routing" in args.only:
                p = routing.QUICK if quick else routing.Parameters()
                quality = await part("routing quality", routing.quality(url, p))
                parts.setdefault("routing", {})["quality"] = quality
                results.write(out, args.out)
        finally:
            await reference.close()
        timing.setdefault("load", {})["run"] = load.window(began)
    timing["seconds"] = round(time.time() - began)
    results.write(out, args.out)
    return out


async def level(
    url: str,
    rows: int,
    args: argparse.Namespace,
    reference: Reference,
    parts: dict[str, Any],
    part: Any,
) -> None:
    """One level: a database loaded once, then its search and its analytics."""
    async with server.database(url, str(rows)) as level_url:
        log(f"[{rows:,}] bulk load")
        loaded = await data.prepare(
            level_url, rows, queries=10 if args.quick else 50, model_rows=1_000, seed=7
        )
        loaded.load["reference"] = await reference.burst()  # right after the load
        if "search" in args.only:
            p = search.QUICK if args.quick else search.Parameters()
            figures = await part("search", search.measure(loaded, reference, p))
            parts.setdefault("search", []).append(figures)
        if "analytics" in args.only:
            p = analytics.QUICK if args.quick else analytics.Parameters()
            figures = await part("analytics", analytics.measure(loaded, reference, p))
            parts.setdefault("analytics", []).append(figures)
        if "routing" in args.only:
            p = routing.QUICK if args.quick else routing.Parameters()
            figures = await part("routing", routing.latency(loaded, reference, p))
            parts.setdefault("routing", {}).setdefault("latency", []).append(figures)
        p_partitions = partitions.QUICK if args.quick else partitions.Parameters()
        if "partitions" in args.only and rows >= p_partitions.min_rows:  # last: it deletes
            measured = partitions.measure(loaded, url, reference, p_partitions)
            parts.setdefault("partitions", []).append(await part("partitions", measured))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    measured = asyncio.run(run(args, command))
    previous = results.read(args.compare) if args.compare else None
    print(summary.table(measured, previous).text())
    log(
        f"done in {measured['seconds'] / 60:.0f} min; wrote {args.out / 'results.json'} and "
        f"{args.out / 'RESULTS.md'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
