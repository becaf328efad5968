"""The measurements of one level of the search benchmark (see :mod:`bench.search`)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import numpy as np

from orb_learning import LearningDatabase, bulk, reclaim
from orb_learning._search import SearchTuning

from . import report
from .search_baselines import Duck, NumpyExact, exact_pg, sync
from .search_data import CASES, QueryEmbedder, now
from .timing import REFERENCE, Call, Measured, round_robin, timed

SWEEP = ((40, 1), (100, 1), (40, 4), (100, 4), (200, 4), (400, 4), (800, 4))
"""(ef_search, candidates per result) points of the sweep."""
Exact = dict[str, list[list[str]]]
"""Case -> per query, the exact top-10 ids."""


def open_db(
    url: str, queries: np.ndarray, tuning: SearchTuning | None = None, **settings: Any
) -> LearningDatabase:
    """The library as a service uses it; queries embedded beforehand (excluded from times)."""
    db = LearningDatabase(url, preload_model=False, embedder=QueryEmbedder(queries), **settings)
    if tuning is not None:
        db._tuning = tuning  # the benchmark's variants: the ef_search sweep
    return db


def cycling(names: list[str]) -> Callable[[], str]:
    it = itertools.cycle(names)
    return lambda: next(it)


def search_call(db: LearningDatabase, case: str, names: list[str]) -> Any:
    repo, days_back = CASES[case]
    pick = cycling(names)

    async def call() -> Any:
        return await db.find_similar_executions(
            pick(), repo=repo, days_back=days_back, limit=10, threshold=-1.0
        )

    return call


async def library_index(connection: asyncpg.Connection) -> str:
    definition = await connection.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = $1", bulk.VECTOR_INDEX
    )
    return "halfvec" if definition and "halfvec" in definition else "vector"


async def exact_answers(connection: asyncpg.Connection, queries: np.ndarray) -> tuple[Exact, float]:
    started = time.perf_counter()
    answers = {case: [await exact_pg(connection, case, q) for q in queries] for case in CASES}
    return answers, time.perf_counter() - started


async def recall(
    db: LearningDatabase, names: list[str], exact: Exact, cases: tuple[str, ...] = tuple(CASES)
) -> dict[str, dict[str, Any]]:
    """Per case: recall@10 against the exact ids, and queries returning fewer rows."""
    out = {}
    for case in cases:
        repo, days_back = CASES[case]
        hits = expected = fewer = returned = 0
        for name, truth in zip(names, exact[case], strict=True):
            rows = await db.find_similar_executions(
                name, repo=repo, days_back=days_back, limit=10, threshold=-1.0
            )
            got = {str(r["task_id"]) for r in rows}
            hits += len(got & set(truth))
            expected += len(truth)
            returned += len(rows)
            fewer += len(rows) < len(truth)
        out[case] = {
            "recall_at_10": hits / expected if expected else None,
            "queries": len(names),
            "exact_rows": expected,
            "returned_rows": returned,
            "queries_with_fewer_rows": fewer,
        }
    return out


async def baselines(
    connection: asyncpg.Connection,
    numpy_exact: NumpyExact,
    duck: Duck,
    queries: np.ndarray,
    exact: Exact,
    *,
    calls: int,
    budget: float,
    reference: Call,
) -> tuple[Measured, dict[str, Any]]:
    """PostgreSQL exact, NumPy and DuckDB top 10, timed in the same rounds (with the
    machine's reference, to read the API's ratios to them); their answers compared with
    PostgreSQL's exact ids."""
    at = now()
    cases: dict[str, Any] = {}
    agreement: dict[str, Any] = {}
    for case in CASES:
        index = itertools.cycle(range(len(queries)))
        pg_index = itertools.cycle(range(len(queries)))
        duck_index = itertools.cycle(range(len(queries)))

        async def pg(case: str = case, it: Any = pg_index) -> Any:
            return await exact_pg(connection, case, queries[next(it)])

        cases[f"PostgreSQL exact / {case}"] = pg
        cases[f"NumPy / {case}"] = sync(
            lambda case=case, it=index: numpy_exact.top10(case, queries[next(it)])
        )
        cases[f"DuckDB / {case}"] = sync(
            lambda case=case, it=duck_index: duck.top10(case, queries[next(it)], at)
        )
        numpy_same = sum(
            set(numpy_exact.top10(case, q)) == set(truth)
            for q, truth in zip(queries, exact[case], strict=True)
        )
        duck_same = sum(
            set(duck.top10(case, q, at)) == set(truth)
            for q, truth in zip(queries, exact[case], strict=True)
        )
        agreement[case] = {
            "numpy_same_ids": numpy_same,
            "duckdb_same_ids": duck_same,
            "queries": len(queries),
            "rows_passing_filters": numpy_exact.rows(case),
        }
    measured = await round_robin(cases | {REFERENCE: reference}, calls=calls, budget_seconds=budget)
    return measured, agreement


async def api_latency(
    dbs: dict[str, LearningDatabase],
    names: list[str],
    *,
    calls: int,
    budget: float,
    reference: Call,
) -> Measured:
    """The three cases through the API, with the machine's reference in the same rounds."""
    cases = {
        f"{variant} / {case}": search_call(db, case, names)
        for variant, db in dbs.items()
        for case in CASES
    }
    return await round_robin(cases | {REFERENCE: reference}, calls=calls, budget_seconds=budget)


async def sweep(
    url: str,
    names: list[str],
    queries: np.ndarray,
    exact: Exact,
    precisions: list[str],
    *,
    calls: int,
    reference: Call,
) -> list[dict[str, Any]]:
    """Recall and p50 for ef_search x candidates per result, on the HNSW cases (the
    machine's reference timed in the same rounds)."""
    hnsw_cases = ("unfiltered", "frequent repo")
    out = []
    for precision in precisions:
        for ef_search, per_result in SWEEP:
            tuning = SearchTuning(  # fixed points: no scaling with the rows searched
                ef_search=ef_search,
                candidates_per_result=per_result,
                scale_ef_search=False,
                halfvec_ef_factor=1.0,
            )
            async with open_db(url, queries, tuning) as db:
                quality = await recall(db, names, exact, hnsw_cases)
                measured = await round_robin(
                    {case: search_call(db, case, names) for case in hnsw_cases}
                    | {REFERENCE: reference},
                    calls=calls,
                    warmup=5,
                )
            out.append(
                {
                    "precision": precision,
                    "ef_search": ef_search,
                    "candidates_per_result": per_result,
                    "recall": {c: quality[c]["recall_at_10"] for c in hnsw_cases},
                    "latency": report.measured(measured)["latency_ms"],
                }
            )
    return out


async def tier_aggregates(
    db: LearningDatabase, connection: asyncpg.Connection, duck: Duck, *, calls: int, budget: float
) -> Measured:
    from .queries import DIRECT_TIER

    cases = {
        "API get_tier_performance(30), fresh=False": lambda: db.get_tier_performance(
            days_back=30, fresh=False
        ),
        "API get_tier_performance(30), fresh=True": lambda: db.get_tier_performance(
            days_back=30, fresh=True
        ),
        "PostgreSQL GROUP BY on executions": lambda: connection.fetch(DIRECT_TIER, 30, None),
        "DuckDB GROUP BY on executions": sync(duck.tier),
    }
    return await round_robin(cases, calls=calls, budget_seconds=budget)


async def sizes(connection: asyncpg.Connection, rows: int) -> dict[str, Any]:
    relations = await connection.fetch(
        "SELECT c.relname AS name, c.relkind AS kind, pg_relation_size(c.oid) AS bytes "
        "FROM pg_class c WHERE c.oid = 'executions'::regclass "
        "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'executions'::regclass) "
        "OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'executions'::regclass) "
        "ORDER BY bytes DESC"
    )
    total = await connection.fetchval("SELECT pg_total_relation_size('executions')")
    return {
        "rows": rows,
        "relations": {r["name"]: int(r["bytes"]) for r in relations},
        "total_bytes": int(total),
        "total_bytes_per_row": total / rows,
    }


async def ingest(
    db: LearningDatabase, generator: Any, *, single_calls: int, batch_rows: int, batch: int
) -> dict[str, Any]:
    """store_execution (embedding given) latency, and store_executions rows/s, with the
    library's HNSW index maintained."""
    records, vectors = generator.batch(single_calls + 10)
    pairs = iter(zip(records, vectors, strict=True))

    async def one() -> None:
        record, vector = next(pairs)
        await db.store_execution(record, embedding=vector)

    single = await round_robin({"store_execution": one}, calls=single_calls, budget_seconds=120)
    seconds = 0.0
    written = 0
    for _ in range(0, batch_rows, batch):
        records, vectors = generator.batch(batch)
        seconds += (
            await timed(lambda r=records, v=vectors: db.store_executions(r, embeddings=v)) / 1000
        )
        written += len(records)
    return {
        "single": report.measured(single),
        "batch": {
            "rows": written,
            "batch": batch,
            "seconds": seconds,
            "rows_per_second": written / seconds,
        },
    }


async def churn(
    db: LearningDatabase,
    connection: asyncpg.Connection,
    generator: Any,
    task_ids: list[str],
    *,
    count: int,
    seed: int,
) -> dict[str, Any]:
    """Insert ``count`` rows (HNSW maintained), delete ``count`` loaded rows, then what the
    library does after a delete (retention's last step): rebuild the index when the share
    deleted calls for it, and VACUUM."""
    started = time.perf_counter()
    for start in range(0, count, 1_000):  # 5,000 rows outlived the 30 s timeout at 1M
        records, vectors = generator.batch(min(1_000, count - start))
        await db.store_executions(records, embeddings=vectors)
    inserted = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    doomed = [task_ids[i] for i in rng.choice(len(task_ids), size=count, replace=False)]
    started = time.perf_counter()
    deleted = await connection.execute(
        "DELETE FROM executions WHERE task_id = ANY($1::uuid[])", doomed, timeout=3600
    )
    delete_seconds = time.perf_counter() - started
    reclaimed = await reclaim.after_delete(db, deleted_rows=int(deleted.split()[-1]))
    return {
        "inserted": count,
        "insert_seconds": inserted,
        "deleted": reclaimed.deleted_rows,
        "delete_seconds": delete_seconds,
        "rebuilt_index": reclaimed.rebuilt_index,
        "rebuild_seconds": reclaimed.rebuild_seconds,
        "vacuum_seconds": reclaimed.vacuum_seconds,
    }


def tuning_of(db: LearningDatabase, **changes: Any) -> SearchTuning:
    return dataclasses.replace(db._tuning, **changes)
