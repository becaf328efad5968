"""Semantic search, ingest, storage and the churn cycle at one level, through the API.

``find_similar_executions(q, repo=..., days_back=..., limit=10, threshold=-1.0)`` in three
cases (unfiltered; the frequent repo, ~28% of the rows; the rare repo over 7 days, ~0.5% of
them), the query's embedding excluded (precomputed), ``threshold=-1.0`` so that every query
has ten answers to recall. recall@10 is against PostgreSQL's exact top 10 of the same rows
(index scans off), which is also the baseline the API's p50 is divided by. Then the path
comparison, the ef_search sweep and the sample check's cost (:mod:`bench.search_paths`),
storage, ingest with the HNSW index maintained, the first searches after a restart (with
and without ``bulk.prewarm``), and the churn cycle: inserts, deletes, then VACUUM alone (up
to 100,000 rows: at a million it ran 851 s) against what retention does,
``reclaim.after_delete``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from orb_learning import LearningDatabase, bulk, reclaim

from . import search_paths, server
from .data import CASES, Level, open_db
from .timing import Reference, latency, log, rounds, timed

Exact = dict[str, list[list[str]]]
"""Case -> per query, the exact top-10 task ids."""
EXACT_SQL = {
    "unfiltered": "",
    "frequent repo": "AND repo = $2",
    "rare repo, 7 days": 'AND repo = $2 AND "timestamp" >= now() - make_interval(hours => 24 * $3)',
}


@dataclass(frozen=True)
class Parameters:
    calls: int = 200
    budget: float = 20.0
    """Seconds a baseline case may take before it gets fewer calls (never under 20)."""
    sweep_calls: int = 50
    churn_share: float = 0.078
    churn_max: int = 10_000
    ingest_min: int = 2_000
    vacuum_alone_max_rows: int = 100_000
    restart: bool = True


QUICK = Parameters(calls=30, budget=2.0, sweep_calls=10, ingest_min=200, restart=False)


async def connect(url: str) -> asyncpg.Connection:
    """A plain connection with pgvector's codecs (the exact baseline's and the sizes')."""
    connection = await asyncpg.connect(url)
    await register_vector(connection)
    return connection


async def exact_top10(connection: asyncpg.Connection, case: str, query: np.ndarray) -> list[str]:
    """The exact top 10 ids (ties broken by task_id), no HNSW index walked."""
    repo, days_back = CASES[case]
    sql = (
        "SELECT task_id FROM executions WHERE embedding IS NOT NULL "
        f"{EXACT_SQL[case]} ORDER BY embedding <=> $1, task_id LIMIT 10"
    )
    arguments = [v for v in (repo, days_back) if v is not None]
    async with connection.transaction(readonly=True):
        await connection.execute("SET LOCAL enable_indexscan = off")
        rows = await connection.fetch(sql, query, *arguments, timeout=3_600)
    return [str(r["task_id"]) for r in rows]


async def exact_answers(url: str, queries: np.ndarray) -> Exact:
    connection = await connect(url)
    try:
        return {case: [await exact_top10(connection, case, q) for q in queries] for case in CASES}
    finally:
        await connection.close()


def search_call(db: LearningDatabase, case: str, names: list[str]) -> Any:
    """One search of the case per call, cycling through the queries."""
    repo, days_back = CASES[case]
    pick = itertools.cycle(names)

    async def call() -> Any:
        return await db.find_similar_executions(
            next(pick), repo=repo, days_back=days_back, limit=10, threshold=-1.0
        )

    return call


async def recall(
    db: LearningDatabase, names: list[str], exact: Exact, cases: tuple[str, ...] = tuple(CASES)
) -> dict[str, dict[str, Any]]:
    """Per case: recall@10 against the exact ids, and the queries answered with fewer rows."""
    out = {}
    for case in cases:
        repo, days_back = CASES[case]
        hits = expected = fewer = 0
        for name, truth in zip(names, exact[case], strict=True):
            rows = await db.find_similar_executions(
                name, repo=repo, days_back=days_back, limit=10, threshold=-1.0
            )
            hits += len({str(r["task_id"]) for r in rows} & set(truth))
            expected += len(truth)
            fewer += len(rows) < len(truth)
        out[case] = {
            "recall": round(hits / expected, 4) if expected else None,
            "exact_rows": expected,
            "queries_with_fewer_rows": fewer,
        }
    return out


async def api(level: Level, exact: Exact, reference: Reference, calls: int) -> dict[str, Any]:
    """recall@10 per case, then the three cases and the reference in the same rounds."""
    async with open_db(level.url, level.queries) as db:
        quality = await recall(db, level.names, exact)
        timed_rounds = await rounds(
            {c: search_call(db, c, level.names) for c in CASES}, reference, calls=calls, budget=60
        )
    return {"recall": quality, **timed_rounds}


async def exact_baseline(level: Level, reference: Reference, p: Parameters) -> dict[str, Any]:
    """PostgreSQL's exact search of each case, in rounds with the reference."""
    connection = await connect(level.url)
    try:
        cases = {}
        for case in CASES:
            pick = itertools.cycle(level.queries)
            cases[case] = lambda case=case, pick=pick: exact_top10(connection, case, next(pick))
        return await rounds(cases, reference, calls=p.calls, budget=p.budget)
    finally:
        await connection.close()


async def storage(url: str) -> dict[str, Any]:
    """Bytes of the table, its TOAST and each index, and of it all, per row."""
    connection = await connect(url)
    try:
        rows = await connection.fetchval("SELECT count(*) FROM executions")
        relations = await connection.fetch(
            "SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes FROM pg_class c "
            "WHERE c.oid = 'executions'::regclass OR c.oid IN (SELECT indexrelid FROM pg_index "
            "WHERE indrelid = 'executions'::regclass) OR c.oid = (SELECT reltoastrelid FROM "
            "pg_class WHERE oid = 'executions'::regclass) ORDER BY bytes DESC, name"
        )
        total = await connection.fetchval("SELECT pg_total_relation_size('executions')")
    finally:
        await connection.close()
    return {
        "rows": rows,
        "bytes_per_row": {_relation(r["name"]): round(r["bytes"] / rows) for r in relations},
        "total_bytes": total,
        "total_bytes_per_row": round(total / rows),
    }


def _relation(name: str) -> str:
    return "executions (TOAST)" if name.startswith("pg_toast") else name


async def ingest(level: Level, reference: Reference, p: Parameters) -> dict[str, Any]:
    """store_execution (its embedding given) in rounds with the reference, then
    store_executions in calls of 1,000 rows: the HNSW index maintained row by row."""
    count = min(p.churn_max, max(p.ingest_min, round(level.rows * p.churn_share)))
    records, vectors = level.generator.batch(p.calls + 10)
    pairs = iter(zip(records, vectors, strict=True))
    async with open_db(level.url, level.queries) as db:

        async def one() -> None:
            record, vector = next(pairs)
            await db.store_execution(record, embedding=vector)

        single = await rounds({"store_execution": one}, reference, calls=p.calls, budget=120)
        seconds = 0.0
        for start in range(0, count, 1_000):
            batch, embeddings = level.generator.batch(min(1_000, count - start))
            seconds += (
                await timed(lambda b=batch, e=embeddings: db.store_executions(b, embeddings=e))
                / 1000
            )
    return {
        "single": single,
        "rows": count,
        "seconds": round(seconds, 2),
        "rows_per_second": round(count / seconds, 1),
        "reference": await reference.burst(),
    }


async def restart(level: Level, reference: Reference) -> list[dict[str, Any]]:
    """The first 30 searches (10 per case) after a restart, without then with prewarm."""
    out = []
    for prewarm in (False, True):
        server.restart(level.url)
        await reference.connect()
        async with open_db(level.url, level.queries) as db:
            started, blocks = time.perf_counter(), None
            if prewarm:
                blocks = await bulk.prewarm(db, table=True)
            seconds = time.perf_counter() - started
            first = [
                await timed(search_call(db, case, level.names[:10]))
                for case in CASES
                for _ in range(10)
            ]
        out.append(
            {
                "prewarm": prewarm,
                "prewarm_seconds": round(seconds, 2) if prewarm else None,
                "blocks": blocks,
                "first_30": latency(first),
            }
        )
    return out


async def churn(level: Level, reference: Reference, p: Parameters) -> dict[str, Any]:
    """Delete loaded rows and reclaim: VACUUM alone (up to ``vacuum_alone_max_rows``),
    then, on as many other rows, the library's step (rebuild when the share calls for it,
    then VACUUM); then recall against new exact answers, and latency with the reference."""
    count = max(1, min(p.churn_max, round(level.rows * p.churn_share)))
    doomed = np.random.default_rng(level.rows).permutation(level.rows)[: 2 * count]
    ids = [level.generator.task_ids[i] for i in doomed]
    out: dict[str, Any] = {"deleted": count}
    async with open_db(level.url, level.queries, command_timeout=86_400) as db:
        steps = [("vacuum_alone", False)] if level.rows <= p.vacuum_alone_max_rows else []
        for (name, rebuild), part in zip(
            [*steps, ("library", None)], (ids[:count], ids[count:]), strict=False
        ):
            async with db.connection() as connection:
                table_rows = await connection.fetchval("SELECT count(*) FROM executions")
                started = time.perf_counter()
                await connection.execute(
                    "DELETE FROM executions WHERE task_id = ANY($1::uuid[])", part, timeout=86_400
                )
                deleted = time.perf_counter() - started
            log(f"[{level.rows:,}] churn: {name}, {count:,} of {table_rows:,} rows deleted")
            done = await reclaim.after_delete(db, deleted_rows=count, rebuild=rebuild)
            out[name] = {
                "table_rows": table_rows,
                "share": round(count / table_rows, 4),
                "delete_seconds": round(deleted, 2),
                "rebuilt_index": done.rebuilt_index,
                "rebuild_seconds": round(done.rebuild_seconds, 2),
                "vacuum_seconds": round(done.vacuum_seconds, 2),
                "reference": await reference.burst(),
            }
    exact = await exact_answers(level.url, level.queries)
    out["after"] = await api(level, exact, reference, p.calls)
    return out


async def measure(level: Level, reference: Reference, p: Parameters) -> dict[str, Any]:
    """Every search figure of one level, in order; ``level.load`` is the bulk load's."""
    tag = f"[{level.rows:,}]"
    out: dict[str, Any] = {
        "rows": level.rows,
        "embeddings": level.embeddings,
        "queries": len(level.names),
        "bulk_load": level.load,
        "storage": await storage(level.url),
    }
    log(f"{tag} exact answers, then the API's latency and recall")
    exact = await exact_answers(level.url, level.queries)
    out["api"] = await api(level, exact, reference, p.calls)
    log(f"{tag} PostgreSQL's exact search (the baseline)")
    out["exact"] = await exact_baseline(level, reference, p)
    log(f"{tag} exact against HNSW path by rows passing the filter; ef_search sweep")
    out["paths"] = await search_paths.paths(level, reference, p.sweep_calls)
    out["sweep"] = await search_paths.sweep(level, exact, reference, p.sweep_calls)
    out["sample_check"] = await search_paths.sample_check(level, reference, p.calls)
    log(f"{tag} ingest with the HNSW index maintained")
    out["ingest"] = await ingest(level, reference, p)
    if p.restart and server.data_dir(level.url) is not None:
        log(f"{tag} restart: the first searches without, then with pg_prewarm")
        out["restart"] = await restart(level, reference)
    log(f"{tag} churn: deletes, VACUUM alone against rebuild + VACUUM")
    out["churn"] = await churn(level, reference, p)
    return out
