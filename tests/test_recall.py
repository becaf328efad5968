"""Search quality is correctness: at 100K rows of clustered vectors, the top 10 agree with an
exact (brute-force) search on at least 95% of results, unfiltered, for a frequent repo, and
for a rare repo within a 7-day window, and never return fewer rows than the exact answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from orb_learning import ExecutionRecord, LearningDatabase, schema
from tests.conftest import fresh_database

ROWS = 100_000
CLUSTERS = 300
DIMENSION = 384


class TableEmbedder:
    """An Embedder for queries named ``q<i>``: the i-th query vector of the test.

    It implements the library's Embedder protocol, so the search runs unchanged, but the
    query vectors come from the same clustered distribution as the stored rows."""

    name = "test-clusters"
    dimension = DIMENSION

    def __init__(self, queries: np.ndarray) -> None:
        self.queries = queries

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.queries[int(t.removeprefix("q"))] for t in texts])


def clustered(rng: np.random.Generator, centers: np.ndarray, count: int) -> np.ndarray:
    """Unit vectors scattered around cluster centres, as text embeddings are."""
    rows = centers[rng.integers(0, len(centers), count)]
    rows = rows + rng.normal(size=(count, DIMENSION)).astype(np.float32) * 0.9
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def repos_for(rng: np.random.Generator, count: int) -> np.ndarray:
    """'frequent' holds ~46% of rows, 'rare' ~0.5%, twenty others share the rest."""
    draw = rng.random(count)
    others = np.char.add("repo-", (draw * 20).astype(int).astype(str))
    return np.where(draw < 0.46, "frequent", np.where(draw < 0.465, "rare", others))


@pytest.fixture(scope="module")
async def recall_database_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    """One database for the module: loading and indexing 100K rows once is enough."""
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
async def loaded(recall_database_url: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    database_url = recall_database_url
    rng = np.random.default_rng(2026)
    centers = rng.normal(size=(CLUSTERS, DIMENSION)).astype(np.float32)
    vectors = clustered(rng, centers, ROWS)
    repos = repos_for(rng, ROWS)
    # Whole days plus 12 h, so no row sits on the boundary of a day window.
    ages = rng.integers(0, 365, ROWS)
    now = datetime.now(UTC)
    records = [
        ExecutionRecord(
            timestamp=now - timedelta(days=int(ages[i]), hours=12),
            task_type="refactor",
            task_description=f"task {i}",
            repo=str(repos[i]),
            model_tier="medium",
            pool_type="mahavishnu",
            routing_confidence=0.8,
            success=True,
            duration_seconds=1.0,
            cost_estimate=0.0,
            actual_cost=0.0,
        )
        for i in range(ROWS)
    ]
    queries = clustered(rng, centers, 40)
    hnsw = next(i for i in schema.executions.indexes if i.name == "idx_executions_embedding_hnsw")
    create_hnsw = str(CreateIndex(hnsw).compile(dialect=postgresql.dialect()))
    connection = await asyncpg.connect(database_url)
    try:
        # Bulk load before building the graph, as an import does; then build it as migrated.
        await connection.execute(f"DROP INDEX {hnsw.name}")
        async with LearningDatabase(database_url, embedder=TableEmbedder(queries)) as db:
            for start in range(0, ROWS, 20_000):
                await db.store_executions(
                    records[start : start + 20_000], embeddings=vectors[start : start + 20_000]
                )
        await connection.execute("SET maintenance_work_mem = '512MB'")
        await connection.execute(create_hnsw)
        await connection.execute("ANALYZE executions")
    finally:
        await connection.close()
    return vectors, repos, ages, queries


def exact_top10(vectors: np.ndarray, mask: np.ndarray, query: np.ndarray) -> list[int]:
    similarity = vectors @ query
    similarity[~mask] = -np.inf
    order = np.argsort(-similarity)[:10]
    return [int(i) for i in order if mask[i]]


@pytest.mark.parametrize(
    ("repo", "days_back"),
    [(None, None), ("frequent", None), ("rare", 7)],
    ids=["unfiltered", "frequent-repo", "rare-repo-7-days"],
)
async def test_recall_at_10_against_exact_search(
    recall_database_url: str,
    loaded: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    repo: str | None,
    days_back: int | None,
) -> None:
    vectors, repos, ages, queries = loaded
    mask = np.ones(ROWS, dtype=bool)
    if repo is not None:
        mask &= repos == repo
    if days_back is not None:
        mask &= ages < days_back
    hits = expected_total = 0
    async with LearningDatabase(recall_database_url, embedder=TableEmbedder(queries)) as db:
        for q in range(len(queries)):
            expected = exact_top10(vectors, mask, queries[q])
            results = await db.find_similar_executions(
                f"q{q}", repo=repo, days_back=days_back, threshold=-1.0
            )
            got = {int(r["task_description"].removeprefix("task ")) for r in results}
            assert len(results) >= len(expected), "fewer rows than the exact answer"
            hits += len(got & set(expected))
            expected_total += len(expected)
    assert expected_total > 0
    recall = hits / expected_total
    assert recall >= 0.95, f"recall@10 {recall:.3f} for repo={repo} days_back={days_back}"
