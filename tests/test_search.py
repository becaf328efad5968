"""Semantic search with the real model: ordering, filters, threshold, both search paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import pytest

from orb_learning import LearningDatabase
from tests.factories import as_stored
from tests.test_store import make_record, unit_vectors

DESCRIPTIONS = [
    "Optimize database queries",
    "Add an index to speed up slow SQL queries on the orders table",
    "Fix the CSS layout of the navbar on mobile",
    "Write unit tests for the payment service",
    "Refactor the authentication middleware",
    "Upgrade the React dependency and fix breaking changes",
]


async def test_quick_start_example_is_found_above_the_default_threshold(
    db: LearningDatabase,
) -> None:
    await db.store_executions([make_record(task_description=d) for d in DESCRIPTIONS])
    results = await db.find_similar_executions("Optimize slow queries", repo="mahavishnu", limit=5)

    descriptions = [r["task_description"] for r in results]
    assert descriptions[0] == "Optimize database queries"
    assert results[0]["similarity"] >= 0.8
    assert "Fix the CSS layout of the navbar on mobile" not in descriptions
    assert all(r["similarity"] >= 0.7 for r in results)


async def test_results_are_ordered_and_carry_the_record_columns(db: LearningDatabase) -> None:
    records = [
        make_record(task_description=d, solution_summary=f"s{i}")
        for i, d in enumerate(DESCRIPTIONS)
    ]
    await db.store_executions(records)
    results = await db.find_similar_executions("speed up slow database queries", threshold=-1.0)

    assert len(results) == len(DESCRIPTIONS)
    similarities = [r["similarity"] for r in results]
    assert similarities == sorted(similarities, reverse=True)
    by_id = {r.task_id: r for r in records}
    for result in results:
        assert "embedding" not in result
        record = by_id[result["task_id"]]
        assert result["task_description"] == record.task_description
        assert result["solution_summary"] == record.solution_summary
        assert result["timestamp"] == record.timestamp
    ranked_css = [r["task_description"] for r in results].index(DESCRIPTIONS[2])
    assert ranked_css > 1, "a CSS task must not rank among the database ones"


async def test_similarity_is_cosine_of_the_descriptions(
    db: LearningDatabase, embedder: Any
) -> None:
    await db.store_executions([make_record(task_description=d) for d in DESCRIPTIONS])
    query = "Improve performance of SQL queries"
    results = await db.find_similar_executions(query, threshold=-1.0)
    vectors = embedder.encode([query, *DESCRIPTIONS])
    stored = [as_stored(v).astype(np.float64) for v in vectors]  # half precision, 0008

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    exact = {d: cosine(stored[0], stored[i + 1]) for i, d in enumerate(DESCRIPTIONS)}
    model = {d: float(vectors[0] @ vectors[i + 1]) for i, d in enumerate(DESCRIPTIONS)}
    for result in results:
        description = result["task_description"]
        assert result["similarity"] == pytest.approx(exact[description], abs=1e-6)
        # Half precision moves a similarity by far less than anything search relies on.
        assert result["similarity"] == pytest.approx(model[description], abs=1e-3)


async def test_threshold_limit_repo_and_window_filters(db: LearningDatabase) -> None:
    now = datetime.now(UTC)
    records = [
        make_record(task_description="Optimize database queries", repo="a", timestamp=now),
        make_record(task_description="Optimize database queries", repo="b", timestamp=now),
        make_record(
            task_description="Optimize database queries",
            repo="a",
            timestamp=now - timedelta(days=40),
        ),
        make_record(
            task_description="Tune slow database queries",
            repo="a",
            timestamp=now - timedelta(days=1),
        ),
        make_record(task_description="Fix the CSS layout of the navbar", repo="a", timestamp=now),
    ]
    await db.store_executions(records)
    query = "Optimize database queries"

    in_a = await db.find_similar_executions(query, repo="a", threshold=0.5)
    assert {r["repo"] for r in in_a} == {"a"}
    assert records[4].task_id not in {r["task_id"] for r in in_a}  # under the threshold
    recent = await db.find_similar_executions(query, repo="a", days_back=30, threshold=0.5)
    assert {r["task_id"] for r in recent} == {records[0].task_id, records[3].task_id}
    everything = await db.find_similar_executions(query, days_back=None, threshold=-1)
    assert len(everything) == 5
    assert len(await db.find_similar_executions(query, limit=2, threshold=-1)) == 2
    assert await db.find_similar_executions(query, repo="missing") == []
    assert await db.find_similar_executions(query, threshold=1.0) == [] or all(
        r["similarity"] >= 1.0 for r in await db.find_similar_executions(query, threshold=1.0)
    )


async def test_empty_store_gives_empty_list(db: LearningDatabase) -> None:
    assert await db.find_similar_executions("anything at all") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -3}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"days_back": -1}, "days_back"),
        ({"days_back": "7"}, "days_back"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -1.01}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"repo": "a\x00b"}, "NUL"),
        ({"task_description": ""}, "task_description"),
        ({"task_description": "x\x00"}, "NUL"),
    ],
)
async def test_bad_search_arguments_raise_value_error(
    db: LearningDatabase, kwargs: dict[str, Any], message: str
) -> None:
    arguments = {"task_description": "valid text", **kwargs}
    with pytest.raises(ValueError, match=message):
        await db.find_similar_executions(**arguments)


RARE_EVERY = 250


async def _load_random(db: LearningDatabase, count: int, rare_every: int) -> np.ndarray:
    now = datetime.now(UTC)
    records = [
        make_record(
            task_description=f"task {i}",
            repo="rare" if i % rare_every == 0 else "common",
            timestamp=now - timedelta(hours=i % 2000),
        )
        for i in range(count)
    ]
    vectors = unit_vectors(count, seed=7)
    await db.store_executions(records, embeddings=vectors)
    return vectors


@pytest.mark.parametrize(("repo", "days_back"), [(None, None), ("common", 30), ("rare", 7)])
async def test_hnsw_and_exact_paths_agree(
    database_url: str,
    embedder: Any,
    connection: asyncpg.Connection,
    repo: str | None,
    days_back: int | None,
) -> None:
    """Forcing each path (by its row threshold) gives the same answer on the same data."""
    exact = LearningDatabase(database_url, embedder=embedder, exact_search_max_rows=10**9)
    hnsw = LearningDatabase(database_url, embedder=embedder, exact_search_max_rows=0)
    async with exact, hnsw:
        await _load_random(exact, 3000, rare_every=50)
        await connection.execute("ANALYZE executions")
        for query in ("task 17", "an unrelated sentence about gardening"):
            # repeat: prepared statements switch to generic plans after five runs
            for _ in range(7):
                a = await exact.find_similar_executions(
                    query, repo=repo, days_back=days_back, threshold=-1
                )
                b = await hnsw.find_similar_executions(
                    query, repo=repo, days_back=days_back, threshold=-1
                )
                assert len(b) == len(a) > 0  # never fewer rows than the exact answer
                overlap = {r["task_id"] for r in a} & {r["task_id"] for r in b}
                assert len(overlap) >= len(a) - 1
                assert [r["similarity"] for r in b] == sorted(
                    (r["similarity"] for r in b), reverse=True
                )


async def test_a_scan_that_runs_out_is_answered_by_the_exact_path(
    database_url: str, embedder: Any, connection: asyncpg.Connection
) -> None:
    """A sparse filter and a tiny hnsw.max_scan_tuples: the index scan stops before it
    finds 10 rows of the filtered repo; the library notices and answers exactly. (At 3,000
    rows the planner sorts a sequential scan instead of walking the graph: sorting is
    disabled in this database, so that the HNSW statement walks it.)"""
    from orb_learning import _search as search

    name = await connection.fetchval("SELECT current_database()")
    await connection.execute(f'ALTER DATABASE "{name}" SET enable_sort = off')
    starving = {"exact_search_max_rows": 0, "max_scan_tuples": 1, "ef_search": 1}
    tuning = search.SearchTuning(**starving)  # ef_search: the 40 candidates asked for
    exact = LearningDatabase(database_url, embedder=embedder, exact_search_max_rows=10**9)
    starved = LearningDatabase(database_url, embedder=embedder, **starving)
    async with exact, starved:
        await _load_random(exact, 3000, rare_every=RARE_EVERY)
        await connection.execute("ANALYZE executions")
        query = (await starved.embed(["task 17"]))[0]
        values = {"query": query, "repo": "rare", "threshold": -1.0, "limit": 10}
        values["candidates"] = 40
        sql = search._hnsw_sql(search._FILTERS[(False, True)])
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_sort = off")
            await search._configure(connection, 40, tuning)
            plan = await connection.fetch(*search._compile("EXPLAIN " + sql, values))
            rows = await connection.fetch(*search._compile(sql, values))
        assert "idx_executions_embedding_hnsw" in "\n".join(r[0] for r in plan)
        assert rows[0]["found"] < 10  # the statement alone would answer short
        for threshold in (-1.0, 0.0):
            want = await exact.find_similar_executions("task 17", repo="rare", threshold=threshold)
            got = await starved.find_similar_executions("task 17", repo="rare", threshold=threshold)
            assert len(want) == 10 or threshold == 0.0
            assert [r["task_id"] for r in got] == [r["task_id"] for r in want]
            assert all("found" not in r for r in got)


async def test_search_plans_use_the_intended_path(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    """The HNSW statement walks the index; the exact one never does, whatever the filters."""
    from orb_learning import _search as search

    await _load_random(db, 2000, rare_every=40)
    await connection.execute("ANALYZE executions")
    values = {
        "query": unit_vectors(1, seed=99)[0],
        "days_back": 30,
        "repo": "common",
        "threshold": -1.0,
        "limit": 10,
        "candidates": 40,
    }

    async def plan(sql: str, *, seqscan: bool = True) -> str:
        async with connection.transaction():
            # Partitions of a few hundred rows each: a sort is the planner's cheapest path
            # there, so that the index CAN serve the statement is what is checked.
            await connection.execute(f"SET LOCAL enable_seqscan = {'on' if seqscan else 'off'}")
            rows = await connection.fetch(*search._compile("EXPLAIN " + sql, values))
        return "\n".join(r[0] for r in rows)

    assert "idx_executions_embedding_hnsw" in await plan(
        seqscan=False,
        sql=search._hnsw_sql(search._FILTERS[(False, False)]),
    )
    for filters in search._FILTERS.values():
        assert "idx_executions_embedding_hnsw" not in await plan(search._exact_sql(filters))


async def test_a_search_leaves_no_setting_on_the_pooled_connection(
    database_url: str, embedder: Any
) -> None:
    """The search's settings are made for the session (no transaction, fewer round trips);
    the pool's reset on release must undo them before SQL of the user's own runs."""
    settings = ("plan_cache_mode", "hnsw.ef_search", "hnsw.iterative_scan", "hnsw.max_scan_tuples")
    show = "SELECT " + ", ".join(f"current_setting('{s}', true)" for s in settings)
    async with LearningDatabase(
        database_url, embedder=embedder, pool_size=1, exact_search_max_rows=0
    ) as db:
        await _load_random(db, 300, rare_every=3)
        async with db.connection() as c:
            await c.execute("LOAD 'vector'")  # the hnsw.* settings exist in this session
            before = tuple(await c.fetchrow(show))
        for repo in (None, "rare"):
            assert await db.find_similar_executions("task 3", repo=repo, threshold=-1.0)
            async with db.connection() as c:
                assert tuple(await c.fetchrow(show)) == before
    assert before == ("auto", "40", "off", "20000")


async def test_the_hnsw_answer_is_the_nearest_of_all_its_candidates(
    database_url: str, embedder: Any, connection: asyncpg.Connection
) -> None:
    """Relaxed order yields candidates only roughly sorted (here: a short candidate list
    and a filter passing a tenth of the rows, so the scan goes on in many batches). The
    answer must be the nearest of *all* of them: a re-rank the planner believes presorted
    (PostgreSQL 17+ keeps a materialized CTE's sort order) would stop at the first ten."""
    from orb_learning import _search as search

    name = await connection.fetchval("SELECT current_database()")
    await connection.execute(f'ALTER DATABASE "{name}" SET enable_sort = off')  # see above
    settings = {"exact_search_max_rows": 0, "ef_search": 1}  # the 40 candidates asked for
    async with LearningDatabase(database_url, embedder=embedder, **settings) as db:
        await _load_random(db, 3000, rare_every=10)
        await connection.execute("ANALYZE executions")
        await connection.execute("SET enable_sort = off")  # the ALTER is for new sessions
        await search._configure(connection, 40, db._tuning)
        unsorted = 0
        for i in range(20):
            text = f"task {i}"
            query = (await db.embed([text]))[0]
            values = {"query": query, "repo": "rare", "candidates": 40}
            scan = search._compile(
                "SELECT task_id, 1 - (embedding <=> :query) AS similarity FROM executions "
                "WHERE repo = :repo ORDER BY embedding <=> :query LIMIT :candidates",
                values,
            )
            plan = await connection.fetch("EXPLAIN " + scan[0], *scan[1:])
            assert "idx_executions_embedding_hnsw" in "\n".join(r[0] for r in plan)
            candidates = await connection.fetch(*scan)
            order = [(-r["similarity"], r["task_id"]) for r in candidates]
            unsorted += order != sorted(order)
            want = [-similarity for similarity, _ in sorted(order)[:10]]
            got = await db.find_similar_executions(text, repo="rare", threshold=-1.0)
            # Never less near than the nearest of the candidates (across partitions the
            # sample check may send a query to the exact path, which can only do better).
            assert len(got) == len(want)
            for found, nearest in zip(got, want, strict=True):
                assert found["similarity"] >= nearest - 1e-6
        assert unsorted > 0  # the case this test is about did occur
