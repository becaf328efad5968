"""Data of the search benchmark: the rows stored, their columns kept in memory (for the
NumPy and DuckDB baselines), and the queries.

At 1,000 rows the descriptions are varied sentences embedded by the real model; above,
vectors are clustered unit vectors (:class:`bench.data.VectorSource`), and the queries are
drawn from the same clusters. Repos are Zipf-weighted (:func:`bench.data.with_repos`, the
most frequent holds ~28% of rows) plus a rare repo holding 0.5% of rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from orb_learning import ExecutionRecord, sample

from . import data

RARE_REPO = "legacy-billing"
RARE_FRACTION = 0.005
QUALIFIERS = (
    "",
    "before the next release",
    "after yesterday's production incident",
    "for the new enterprise customers",
    "so that the nightly job stops timing out",
    "without breaking the public API",
    "and document the change in the changelog",
    "on the legacy Python 2 branch",
    "flagged by the security audit",
    "reported by the mobile team",
    "to cut the cloud bill",
    "under heavy concurrent load",
)
CASES: dict[str, tuple[str | None, int | None]] = {
    "unfiltered": (None, None),
    "frequent repo": (data.FREQUENT_REPO, None),
    "rare repo, 7 days": (RARE_REPO, 7),
}
"""Case name -> (repo, days_back) as passed to find_similar_executions."""


@dataclass
class Columns:
    """The stored rows' columns, in load order (row i of every array is the same row)."""

    task_ids: list[str] = field(default_factory=list)
    repos: list[str] = field(default_factory=list)
    timestamps: list[datetime] = field(default_factory=list)
    tiers: list[str] = field(default_factory=list)
    task_types: list[str] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    quality: list[float | None] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)

    def add(self, records: Sequence[ExecutionRecord], vectors: np.ndarray) -> None:
        for record in records:
            self.task_ids.append(str(record.task_id))
            self.repos.append(record.repo)
            self.timestamps.append(record.timestamp)
            self.tiers.append(record.model_tier)
            self.task_types.append(record.task_type)
            self.success.append(record.success)
            self.durations.append(record.duration_seconds)
            self.costs.append(record.actual_cost)
            self.quality.append(record.quality_score)
        self.vectors.append(vectors)

    def matrix(self) -> np.ndarray:
        return np.concatenate(self.vectors) if self.vectors else np.empty((0, data.DIMENSION))

    def mask(self, repo: str | None, days_back: int | None, now: datetime) -> np.ndarray:
        """Rows passing the case's filters, as the library's SQL filters them."""
        keep = np.ones(len(self.task_ids), dtype=bool)
        if repo is not None:
            keep &= np.asarray(self.repos) == repo
        if days_back is not None:
            cutoff = np.datetime64(now.replace(tzinfo=None), "us") - np.timedelta64(days_back, "D")
            stamps = np.array([t.replace(tzinfo=None) for t in self.timestamps], "datetime64[us]")
            keep &= stamps >= cutoff
        return keep


def with_rare_repo(
    records: list[ExecutionRecord], rng: np.random.Generator
) -> list[ExecutionRecord]:
    picks = rng.random(len(records)) < RARE_FRACTION
    return [
        r.model_copy(update={"repo": RARE_REPO}) if pick else r
        for r, pick in zip(records, picks, strict=True)
    ]


def varied(records: list[ExecutionRecord], rng: np.random.Generator) -> list[ExecutionRecord]:
    """Descriptions with a qualifier drawn at random: about 4,600 distinct sentences."""
    out = []
    for record in records:
        qualifier = QUALIFIERS[int(rng.integers(len(QUALIFIERS)))]
        text = f"{record.task_description} {qualifier}".strip()
        out.append(record.model_copy(update={"task_description": text}))
    return out


class Generator:
    """Batches of (records, vectors), deterministic for a seed; queries from the same data."""

    def __init__(self, *, seed: int, end: datetime, model: object | None = None) -> None:
        self.seed = seed
        self.end = end
        self.rng = np.random.default_rng(seed)
        self.vectors = data.VectorSource(self.rng)
        self.model = model  # an Embedder: real embeddings of varied descriptions
        self.numbers = itertools.count()

    def records(self, count: int) -> list[ExecutionRecord]:
        number = next(self.numbers)
        records = sample.generate(count, seed=self.seed * 100_003 + number, now=self.end)
        records = with_rare_repo(data.with_repos(records, self.rng), self.rng)
        return varied(records, self.rng) if self.model is not None else records

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.model is None:
            return self.vectors.take(len(texts))
        vectors: np.ndarray = np.asarray(self.model.encode(list(texts)), dtype=np.float32)  # type: ignore[attr-defined]
        return vectors

    def batch(self, count: int) -> tuple[list[ExecutionRecord], np.ndarray]:
        records = self.records(count)
        return records, self.embed([r.task_description for r in records])

    def batches(
        self, rows: int, size: int, columns: Columns
    ) -> Iterator[tuple[list[ExecutionRecord], np.ndarray]]:
        for start in range(0, rows, size):
            records, vectors = self.batch(min(size, rows - start))
            columns.add(records, vectors)
            yield records, vectors

    def queries(self, count: int) -> tuple[list[str], np.ndarray]:
        """Query names ``q<i>`` and their vectors: model embeddings of new sentences, or
        new draws from the clusters of the stored rows."""
        if self.model is None:
            return [f"q{i}" for i in range(count)], self.vectors.take(count)
        rng = np.random.default_rng(self.seed + 1)
        texts = [
            r.task_description for r in varied(sample.generate(count, seed=self.seed + 7), rng)
        ]
        return [f"q{i}" for i in range(count)], self.embed(texts)


class QueryEmbedder:
    """An Embedder mapping ``q<i>`` to the i-th precomputed query vector: the search runs
    through the public API unchanged, with the query's embedding excluded from its time."""

    name = "bench-query-table"
    dimension = data.DIMENSION

    def __init__(self, queries: np.ndarray) -> None:
        self.queries = queries

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.queries[int(t.removeprefix("q"))] for t in texts])


def now() -> datetime:
    return datetime.now(UTC)
