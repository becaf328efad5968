"""The rows a level holds and the queries asked of them, deterministic for a seed.

Records come from :func:`orb_learning.sample.generate` (8 task types, 3 tiers, 4 pools,
solution patterns, a year of timestamps, busier lately), their repo redrawn from 20 repos
with Zipf-like frequencies (rank k weighs 1/k: the first holds ~28% of the rows) plus a
rare repo holding 0.5%. Up to ``model_rows`` rows the descriptions get one of 12 qualifiers
(~4,600 distinct sentences) and the real model embeds them; above, vectors are unit vectors
scattered around 300 cluster centres, as text embeddings are, and no model is loaded.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from orb_learning import (
    Embedder,
    ExecutionRecord,
    InsufficientPrivilegeError,
    LearningDatabase,
    bulk,
    sample,
)

DIMENSION = 384
CLUSTERS = 300
REPOS = ("mahavishnu", "session-buddy", "crackerjack", "akosha", "oneiric", "fastblocks",
         "payments-api", "web-frontend", "data-pipeline", "auth-service", "infra-terraform",
         "mobile-app", "search-service", "billing-worker", "docs-site", "cli-tools",
         "ml-training", "notification-hub", "analytics-etl", "design-system")  # fmt: skip
WEIGHTS = np.array([1.0 / rank for rank in range(1, len(REPOS) + 1)])
WEIGHTS /= WEIGHTS.sum()
FREQUENT_REPO = REPOS[0]
RARE_REPO, RARE_SHARE = "legacy-billing", 0.005
QUALIFIERS = ("", "before the next release", "after yesterday's production incident",
              "for the new enterprise customers", "so that the nightly job stops timing out",
              "without breaking the public API", "and document the change in the changelog",
              "on the legacy Python 2 branch", "flagged by the security audit",
              "reported by the mobile team", "to cut the cloud bill",
              "under heavy concurrent load")  # fmt: skip
CASES: dict[str, tuple[str | None, int | None]] = {
    "unfiltered": (None, None),
    "frequent repo": (FREQUENT_REPO, None),
    "rare repo, 7 days": (RARE_REPO, 7),
}
"""Search case -> (repo, days_back) as passed to find_similar_executions."""
HISTORY_GAP = timedelta(minutes=10)
"""History ends this long before the level starts: after a refresh (watermark one minute
back) the live tail holds exactly the rows the analytics add for it."""


def now() -> datetime:
    return datetime.now(UTC)


class Generator:
    """Batches of (records, vectors) and queries from the same distribution; the task ids
    of every row it made, in order (the churn deletes some of them)."""

    def __init__(self, *, seed: int, model: Embedder | None = None) -> None:
        self.seed, self.model = seed, model
        self.end = now() - HISTORY_GAP
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(size=(CLUSTERS, DIMENSION)).astype(np.float32)
        self.numbers = itertools.count()
        self.task_ids: list[str] = []

    def clustered(self, count: int) -> np.ndarray:
        rows = self.centres[self.rng.integers(0, CLUSTERS, count)]
        rows = rows + self.rng.normal(size=(count, DIMENSION)).astype(np.float32) * 0.9
        unit: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
        return unit

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.model is None:
            return self.clustered(len(texts))
        return np.asarray(self.model.encode(list(texts)), dtype=np.float32)

    def records(self, count: int, *, end: datetime | None = None) -> list[ExecutionRecord]:
        made = sample.generate(
            count, seed=self.seed * 100_003 + next(self.numbers), now=end or self.end
        )
        repos = self.rng.choice(len(REPOS), size=count, p=WEIGHTS)
        rare = self.rng.random(count) < RARE_SHARE
        out = []
        for record, repo, is_rare in zip(made, repos, rare, strict=True):
            update: dict[str, Any] = {"repo": RARE_REPO if is_rare else REPOS[repo]}
            if self.model is not None:
                qualifier = QUALIFIERS[int(self.rng.integers(len(QUALIFIERS)))]
                update["task_description"] = f"{record.task_description} {qualifier}".strip()
            out.append(record.model_copy(update=update))
        self.task_ids += [str(r.task_id) for r in out]
        return out

    def batch(self, count: int) -> tuple[list[ExecutionRecord], np.ndarray]:
        records = self.records(count)
        return records, self.embed([r.task_description for r in records])

    def batches(self, rows: int, size: int) -> Iterator[tuple[list[ExecutionRecord], np.ndarray]]:
        for start in range(0, rows, size):
            yield self.batch(min(size, rows - start))

    def queries(self, count: int) -> tuple[list[str], np.ndarray]:
        """Names ``q<i>`` and their vectors: the model's embeddings of new sentences, or new
        draws from the clusters of the stored rows."""
        names = [f"q{i}" for i in range(count)]
        if self.model is None:
            return names, self.clustered(count)
        rng = np.random.default_rng(self.seed + 1)
        texts = [
            f"{r.task_description} {QUALIFIERS[int(rng.integers(len(QUALIFIERS)))]}"
            for r in sample.generate(count, seed=self.seed + 7)
        ]
        return names, self.embed(texts)

    def live_tail(self, count: int) -> tuple[list[ExecutionRecord], np.ndarray]:
        """``count`` rows stamped within the last minute (what fresh=True adds)."""
        at = now()
        records = [
            r.model_copy(update={"timestamp": at - timedelta(seconds=float(s))})
            for r, s in zip(
                self.records(count, end=at), self.rng.uniform(0, 50, count), strict=True
            )
        ]
        return records, self.clustered(count)


class QueryTable:
    """An Embedder mapping ``q<i>`` to the i-th precomputed query vector: searches go
    through the public API unchanged, the query's embedding excluded from their time.
    Stored rows always come with their vectors, so it never embeds anything else."""

    name = "bench-query-table"
    dimension = DIMENSION

    def __init__(self, queries: np.ndarray) -> None:
        self.queries = queries

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.queries[int(t.removeprefix("q"))] for t in texts])


def open_db(url: str, queries: np.ndarray, **settings: Any) -> LearningDatabase:
    """The library as a service uses it, with the queries embedded beforehand."""
    return LearningDatabase(url, preload_model=False, embedder=QueryTable(queries), **settings)


async def load(url: str, generator: Generator, queries: np.ndarray, rows: int) -> dict[str, Any]:
    """``rows`` rows through the bulk path (:func:`orb_learning.bulk.bulk_load`: binary COPY
    with the HNSW index dropped, then one parallel build), then VACUUM (ANALYZE) and a
    CHECKPOINT, so that neither autovacuum nor the checkpointer writes the load while later
    phases are timed. The time spent generating the rows is not counted."""
    generating = 0.0

    def batches() -> Iterator[tuple[list[ExecutionRecord], np.ndarray]]:
        nonlocal generating
        source = generator.batches(rows, 20_000)
        while True:
            started = time.perf_counter()
            item = next(source, None)
            generating += time.perf_counter() - started
            if item is None:
                return
            yield item

    async with open_db(url, queries, command_timeout=86_400) as db:
        stats = await bulk.bulk_load(db, batches())
        async with db.connection() as connection:
            started = time.perf_counter()
            await connection.execute("VACUUM (ANALYZE) executions", timeout=86_400)
            vacuum = time.perf_counter() - started
            # On a server of your own CHECKPOINT may be refused: it may then write meanwhile.
            with contextlib.suppress(InsufficientPrivilegeError):
                await connection.execute("CHECKPOINT", timeout=86_400)
    copy = stats.load_seconds - generating
    return {
        "rows": stats.rows,
        "copy_seconds": round(copy, 2),
        "copy_rows_per_second": round(stats.rows / copy),
        "index_seconds": round(stats.index_seconds, 2),
        "analyze_seconds": round(stats.analyze_seconds, 2),
        "total_seconds": round(copy + stats.index_seconds + stats.analyze_seconds, 2),
        "vacuum_seconds": round(vacuum, 2),
    }


@dataclass
class Level:
    """One level's database, loaded, with the generator that made its rows and the queries."""

    url: str
    rows: int
    generator: Generator
    names: list[str]
    queries: np.ndarray
    embeddings: str
    load: dict[str, Any]


async def prepare(url: str, rows: int, *, queries: int, model_rows: int, seed: int) -> Level:
    """Load ``rows`` rows into the database at ``url``: real embeddings up to
    ``model_rows`` rows (the default backend), clustered vectors above."""
    model = None
    if rows <= model_rows:
        from orb_learning import SentenceTransformerEmbedder

        model = SentenceTransformerEmbedder()
        model.load()
    generator = Generator(seed=seed, model=model)
    names, vectors = generator.queries(queries)
    loaded = await load(url, generator, vectors, rows)
    kind = "all-MiniLM-L6-v2 (real)" if model else "clustered unit vectors"
    return Level(url, rows, generator, names, vectors, kind, loaded)
