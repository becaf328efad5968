"""Realistic executions, loaded through the library's own batch path.

Records come from :func:`orb_learning.sample.generate` (8 task types, 3 tiers, 4 pools,
solution patterns, a year of timestamps, busier lately); their repo is redrawn from 20
repos with Zipf-like frequencies (rank k has weight 1/k), since the sample has only 6.
Vectors are precomputed clustered unit vectors (300 clusters), so no model is loaded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from orb_learning import ExecutionRecord, LearningDatabase, sample

DIMENSION = 384
CLUSTERS = 300
REPOS: tuple[str, ...] = (
    "mahavishnu",
    "session-buddy",
    "crackerjack",
    "akosha",
    "oneiric",
    "fastblocks",
    "payments-api",
    "web-frontend",
    "data-pipeline",
    "auth-service",
    "infra-terraform",
    "mobile-app",
    "search-service",
    "billing-worker",
    "docs-site",
    "cli-tools",
    "ml-training",
    "notification-hub",
    "analytics-etl",
    "design-system",
)
REPO_WEIGHTS = np.array([1.0 / rank for rank in range(1, len(REPOS) + 1)])
REPO_WEIGHTS /= REPO_WEIGHTS.sum()
FREQUENT_REPO = REPOS[0]
HNSW_INDEX = "idx_executions_embedding_hnsw"
HISTORY_GAP = timedelta(minutes=10)
"""History ends this long before the load starts, so that after a refresh (watermark: one
minute before it) the live tail holds exactly the extra recent batch."""


class NoModel:
    """An Embedder that refuses to embed: every vector of the benchmark is precomputed."""

    name = "bench-precomputed-vectors"
    dimension = DIMENSION

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("the benchmark never embeds: pass embeddings= to store_executions")


def open_database(url: str, **settings: Any) -> LearningDatabase:
    """The library as a service would use it, minus the model."""
    return LearningDatabase(url, preload_model=False, embedder=NoModel(), **settings)


class VectorSource:
    """Unit vectors scattered around fixed cluster centres, as text embeddings are."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.centers = rng.normal(size=(CLUSTERS, DIMENSION)).astype(np.float32)

    def take(self, count: int) -> np.ndarray:
        rows = self.centers[self.rng.integers(0, CLUSTERS, count)]
        rows = rows + self.rng.normal(size=(count, DIMENSION)).astype(np.float32) * 0.9
        unit: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
        return unit


def with_repos(records: list[ExecutionRecord], rng: np.random.Generator) -> list[ExecutionRecord]:
    """The records with their repo redrawn from the 20 Zipf-weighted repos."""
    picks = rng.choice(len(REPOS), size=len(records), p=REPO_WEIGHTS)
    return [r.model_copy(update={"repo": REPOS[i]}) for r, i in zip(records, picks, strict=True)]


def batches(
    rows: int, batch: int, *, seed: int, end: datetime
) -> Iterator[tuple[list[ExecutionRecord], np.ndarray]]:
    """``rows`` records ending at ``end``, with their vectors, ``batch`` at a time."""
    rng = np.random.default_rng(seed)
    vectors = VectorSource(rng)
    for number, start in enumerate(range(0, rows, batch)):
        count = min(batch, rows - start)
        records = with_repos(sample.generate(count, seed=seed * 100_003 + number, now=end), rng)
        yield records, vectors.take(count)


@dataclass(frozen=True)
class LoadStats:
    rows: int
    batch: int
    generate_seconds: float
    store_seconds: float
    vacuum_analyze_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.store_seconds

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "rows_per_second": self.rows_per_second}


async def load(url: str, rows: int, *, batch: int, seed: int) -> LoadStats:
    """Drop the HNSW index (this benchmark does not search), store ``rows`` executions
    with ``store_executions`` in batches, then VACUUM (ANALYZE) the table."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
    finally:
        await connection.close()
    end = datetime.now(UTC) - HISTORY_GAP
    generate = store = 0.0
    async with open_database(url) as db:
        source = batches(rows, batch, seed=seed, end=end)
        while True:
            started = time.perf_counter()
            item = next(source, None)
            generate += time.perf_counter() - started
            if item is None:
                break
            records, vectors = item
            started = time.perf_counter()
            written = await db.store_executions(records, embeddings=vectors)
            store += time.perf_counter() - started
            assert written == len(records), (written, len(records))
    connection = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        # VACUUM as well as ANALYZE: autovacuum would otherwise start on the freshly
        # inserted table in the middle of the measurements.
        await connection.execute("VACUUM (ANALYZE) executions")
        vacuum = time.perf_counter() - started
    finally:
        await connection.close()
    return LoadStats(rows, batch, generate, store, vacuum)


def tail_records(count: int, *, seed: int) -> tuple[list[ExecutionRecord], np.ndarray]:
    """``count`` executions stamped within the last minute (the live tail)."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    records = [
        r.model_copy(update={"timestamp": now - timedelta(seconds=float(rng.uniform(0, 50)))})
        for r in with_repos(sample.generate(count, seed=seed, now=now), rng)
    ]
    return records, VectorSource(rng).take(count)
