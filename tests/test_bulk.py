"""The bulk path (HNSW index dropped, rows loaded, index rebuilt), prewarm, and the HNSW
search path on the half-precision index: exact rows, a valid index, full-precision scores."""

from __future__ import annotations

import json

import asyncpg
import numpy as np
import pytest

from orb_learning import LearningDatabase, _search as search, bulk
from tests.factories import as_stored
from tests.test_store import make_record, unit_vectors

INDEX_STATE = (
    "SELECT i.indisvalid, i.indisready, pg_get_indexdef(i.indexrelid) AS definition "
    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1"
)


def batches(count: int, size: int, seed: int = 0) -> list[tuple[list, np.ndarray]]:
    vectors = unit_vectors(count, seed)
    records = [make_record(task_description=f"bulk task {i}") for i in range(count)]
    return [(records[i : i + size], vectors[i : i + size]) for i in range(0, count, size)]


async def index_state(connection: asyncpg.Connection) -> asyncpg.Record | None:
    return await connection.fetchrow(INDEX_STATE, bulk.VECTOR_INDEX)


async def test_bulk_load_rebuilds_a_valid_index_over_exactly_the_rows(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    before = await index_state(connection)
    loaded = batches(3_000, 1_000)
    stats = await bulk.bulk_load(db, loaded, maintenance_work_mem="256MB")

    assert stats.rows == 3_000
    assert await connection.fetchval("SELECT count(*) FROM executions") == 3_000
    after = await index_state(connection)
    assert after is not None and after["indisvalid"] and after["indisready"]
    assert before is not None and after["definition"] == before["definition"]
    stored = {
        r["task_description"]: r["embedding"].to_numpy()
        for r in await connection.fetch("SELECT task_description, embedding FROM executions")
    }
    for records, vectors in loaded:
        for record, vector in zip(records, vectors, strict=True):
            assert np.array_equal(stored[record.task_description], as_stored(vector))


async def test_a_failed_bulk_load_still_rebuilds_the_index(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    good = batches(500, 500)
    bad_vectors = unit_vectors(10, 1)
    bad_vectors[3] = np.nan  # refused by the library before anything is written
    bad = ([make_record() for _ in range(10)], bad_vectors)

    with pytest.raises(ValueError, match="NaN"):
        await bulk.bulk_load(db, [*good, bad], maintenance_work_mem="128MB")

    state = await index_state(connection)
    assert state is not None and state["indisvalid"]
    assert await connection.fetchval("SELECT count(*) FROM executions") == 500


async def test_ensure_vector_index_rebuilds_a_missing_index_only(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    assert await bulk.ensure_vector_index(db) is False
    await connection.execute(f"DROP INDEX {bulk.VECTOR_INDEX}")
    assert await index_state(connection) is None

    assert await bulk.ensure_vector_index(db, maintenance_work_mem="64MB") is True
    state = await index_state(connection)
    assert state is not None and state["indisvalid"]


async def test_prewarm_loads_the_index_and_the_table(db: LearningDatabase) -> None:
    ((records, vectors),) = batches(200, 200)
    await db.store_executions(records, embeddings=vectors)
    blocks = await bulk.prewarm(db, table=True)
    assert set(blocks) == {bulk.VECTOR_INDEX, "executions"}
    assert all(count > 0 for count in blocks.values())


class QueryTable:
    """An Embedder for queries named ``q<i>``: the i-th given vector."""

    name = "test-query-table"
    dimension = 384

    def __init__(self, queries: np.ndarray) -> None:
        self.queries = queries

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.queries[int(t.removeprefix("q"))] for t in texts])


async def test_the_hnsw_path_returns_exact_scores_in_order(database_url: str) -> None:
    """exact_search_max_rows=0 forces the HNSW path; the similarities are still the exact
    cosines of the stored (half-precision) vectors, most similar first."""
    vectors = unit_vectors(2_000, 3)
    records = [make_record(task_description=f"row {i}") for i in range(2_000)]
    queries = unit_vectors(5, 4)
    async with LearningDatabase(
        database_url, embedder=QueryTable(queries), exact_search_max_rows=0
    ) as db:
        await db.store_executions(records, embeddings=vectors)
        for q, query in enumerate(queries):
            rows = await db.find_similar_executions(f"q{q}", days_back=None, threshold=-1.0)
            stored = np.stack([as_stored(v) for v in vectors]).astype(np.float64)
            scores = (
                stored
                @ as_stored(query).astype(np.float64)
                / (
                    np.linalg.norm(stored, axis=1)
                    * np.linalg.norm(as_stored(query).astype(np.float64))
                )
            )
            got = [r["similarity"] for r in rows]
            assert len(rows) == 10
            assert got == sorted(got, reverse=True)
            for row in rows:
                index = int(row["task_description"].removeprefix("row "))
                assert row["similarity"] == pytest.approx(float(scores[index]), abs=1e-6)
            best = {int(i) for i in np.argsort(-scores)[:10]}
            found = {int(r["task_description"].removeprefix("row ")) for r in rows}
            assert len(best & found) >= 9


async def test_the_hnsw_statement_walks_the_migrated_index(
    connection: asyncpg.Connection,
) -> None:
    """The HNSW statement's ORDER BY matches the index expression, so the planner uses it."""
    vectors = unit_vectors(1, 5)
    sql = search._hnsw_sql(search._FILTERS[(False, False)])
    values = {"query": vectors[0], "threshold": -1.0, "limit": 10, "candidates": 40}
    statement, *arguments = search._compile("EXPLAIN (FORMAT JSON) " + sql, values)
    async with connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        plan = await connection.fetchval(statement, *arguments)
    text = plan if isinstance(plan, str) else json.dumps(plan)
    assert f'"Index Name": "{bulk.VECTOR_INDEX}' in text, text  # a partition's


async def test_an_import_with_the_index_deferred_ends_with_a_valid_index_and_the_rows(
    db: LearningDatabase, connection: asyncpg.Connection, embedder: object, tmp_path: object
) -> None:
    from pathlib import Path

    from orb_learning.importer import import_duckdb
    from tests.test_import_duckdb import (
        DESCRIPTIONS,
        FIRST_VERSION_COLUMNS,
        check_table,
        source_rows,
        write_duckdb,
    )

    rows = source_rows()[: len(DESCRIPTIONS)]
    path = write_duckdb(Path(str(tmp_path)) / "learning.db", rows)
    before = await index_state(connection)
    summary = await import_duckdb(db, path, defer_index=True)

    assert summary.index_deferred and summary.imported == len(rows)
    after = await index_state(connection)
    assert after is not None and after["indisvalid"]
    assert before is not None and after["definition"] == before["definition"]
    await check_table(connection, rows, FIRST_VERSION_COLUMNS, embedder)  # type: ignore[arg-type]


def test_the_exact_path_threshold_grows_with_the_table() -> None:
    default = search.SearchTuning()
    assert search.exact_max_rows(default, 0) == 1_000  # never analyzed: small, go exact
    assert search.exact_max_rows(default, 100_000) == pytest.approx(4_427, abs=1)
    assert search.exact_max_rows(default, 1_000_000) == 14_000
    fixed = search.SearchTuning(exact_search_max_rows=10)
    assert search.exact_max_rows(fixed, 1_000_000) == 10


async def test_planner_estimates_are_read_at_most_once_a_ttl(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    """The table's rows and each filter's estimate: read once, then kept for the ttl."""
    await bulk.bulk_load(db, batches(300, 300), maintenance_work_mem="64MB")  # ANALYZEs
    cached, fresh = search.PlannerEstimates(ttl=3600), search.PlannerEstimates(ttl=0)
    assert await cached.table_rows(connection) == await fresh.table_rows(connection) == 300
    before = await cached.passing_rows(connection, None, "mahavishnu")
    assert before == await fresh.passing_rows(connection, None, "mahavishnu") > 0
    records, vectors = batches(200, 200, seed=1)[0]
    await db.store_executions(records, embeddings=vectors)
    await connection.execute("ANALYZE executions")
    assert await cached.table_rows(connection) == 300
    assert await fresh.table_rows(connection) == 500
    assert await cached.passing_rows(connection, None, "mahavishnu") == before
    assert await fresh.passing_rows(connection, None, "mahavishnu") > before
    assert await fresh.passing_rows(connection, 7, "no such repo") <= 1  # the planner's floor


async def test_planner_estimates_keep_the_last_filters_asked_for(
    connection: asyncpg.Connection,
) -> None:
    estimates = search.PlannerEstimates(max_filters=2)
    await estimates.table_rows(connection)
    for repo in ("a", "b", "a", "c"):
        await estimates.passing_rows(connection, None, repo)
    await estimates.table_rows(connection)
    assert list(estimates._read) == [(None, "a"), (None, "c"), "table"]


def test_ef_search_grows_with_the_graph_within_pgvector_bounds() -> None:
    tuning = search.SearchTuning(ef_search=100, halfvec_ef_factor=1.0)
    assert search._ef_search(tuning, 40, 50_000) == 100
    assert search._ef_search(tuning, 40, 100_000) == 100
    assert search._ef_search(tuning, 40, 400_000) == 200
    assert search._ef_search(tuning, 40, 1_000_000) == 316
    assert search._ef_search(tuning, 40, 1e9) == 1000
    assert search._ef_search(tuning, 400, 10) == 400  # never fewer than the candidates
    fixed = search.SearchTuning(ef_search=100, scale_ef_search=False, halfvec_ef_factor=1.0)
    assert search._ef_search(fixed, 40, 1_000_000) == 100
    halfvec = search.SearchTuning(ef_search=100)  # the default: twice the list
    assert search._ef_search(halfvec, 40, 50_000) == 200
    assert search._ef_search(halfvec, 40, 400_000) == 400


def test_ef_search_shrinks_with_the_graphs_a_window_spreads_over() -> None:
    """k partitions holding the window's rows alike walk k lists: each 1/sqrt(k) as long;
    one partition holding nearly all of them counts as one."""
    tuning = search.SearchTuning(ef_search=100, halfvec_ef_factor=1.0)
    assert search._ef_search(tuning, 40, 400_000, graphs=4.0) == 100
    assert search._ef_search(tuning, 40, 400_000, graphs=100.0) == 40  # never under candidates
    fixed = search.SearchTuning(ef_search=100, scale_ef_search=False, halfvec_ef_factor=1.0)
    assert search._ef_search(fixed, 40, 400_000, graphs=4.0) == 100

    def append(*rows: float) -> dict[str, object]:
        return {"Node Type": "Append", "Plans": [{"Plan Rows": r} for r in rows]}

    assert search._spread(append(100, 100, 100, 100)) == 4.0
    assert search._spread(append(10_000, 1, 0, 0)) == pytest.approx(1.0, abs=0.01)
    assert search._spread({"Node Type": "Gather", "Plans": [append(5, 5)]}) == 2.0
    assert search._spread({"Node Type": "Seq Scan", "Plan Rows": 50}) == 1.0
    assert search._spread(append(0, 0)) == 1.0
