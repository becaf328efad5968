"""The random sample that checks each HNSW answer (see :mod:`orb_learning._search`).

The walk can settle in a neighbouring group of similar executions and return ten rows none
of which is among the exact ten (measured on 30,000 noisy copies of 300 real task
descriptions' embeddings, stored grouped by task: 9 of 24 fresh builds answered one of 60
new descriptions with recall 0.0-0.1). A sampled row that passes the query's filters, is not
in the answer and is more similar than its last row proves the answer wrong, and the exact
path answers instead. A wrong answer misses a whole group (37 to 1,211 rows beat its last
row, in 111 such answers), which a 4,096-row sample misses with probability 0.6% for 37 rows
in 30,000 and 1e-6 for 100. A stale sample (a row deleted or changed since) costs at most
an exact answer that was not needed, never a wrong one.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import asyncpg

SAMPLE_RUN = 16
SAMPLE_TTL = 300.0
CHECK_MARGIN = 1e-4  # a sampled row must beat the answer by this much: ties prove nothing
WINDOW_MARGIN = 60.0
"""Seconds: a sampled row this close to a window's start is not used for that window."""
_SAMPLE_SQL = (
    'SELECT s.task_id, s.repo, extract(epoch FROM s."timestamp")::float8 AS at, s.embedding, '
    "extract(epoch FROM now())::float8 AS now FROM unnest($1::uuid[]) AS start(id) "
    'CROSS JOIN LATERAL (SELECT task_id, repo, "timestamp", embedding FROM executions '
    "WHERE task_id >= start.id AND embedding IS NOT NULL ORDER BY task_id LIMIT $2) s"
)


async def read_sample(connection: asyncpg.Connection, rows: int, read_at: float) -> RowSample:
    """About ``rows`` rows at random: runs of ``SAMPLE_RUN`` from random task_ids up."""
    starts = [uuid.UUID(int=random.getrandbits(128)) for _ in range(max(rows // SAMPLE_RUN, 1))]
    return RowSample.from_rows(await connection.fetch(_SAMPLE_SQL, starts, SAMPLE_RUN), read_at)


@dataclass(frozen=True)
class RowSample:
    """Rows read at random, with what the filters need: runs of ``SAMPLE_RUN`` task_ids
    from random UUIDs up (uniform for the default uuid4 ids; time-ordered ids still give
    many short runs spread over the history)."""

    task_ids: tuple[uuid.UUID, ...]
    repos: np.ndarray
    seconds: np.ndarray
    """Each row's ``timestamp``, Unix seconds."""
    vectors: np.ndarray
    """Unit rows, float32 (the stored half-precision values, normalized)."""
    server_now: float
    read_at: float
    """``time.monotonic()`` when read (with ``server_now``: the server's clock now)."""

    @classmethod
    def from_rows(cls, rows: list[asyncpg.Record], read_at: float) -> RowSample:
        unique = list({r["task_id"]: r for r in rows}.values())  # runs may overlap
        vectors = np.array([r["embedding"].to_numpy() for r in unique], dtype=np.float32)
        vectors = vectors.reshape(len(unique), -1) if unique else np.zeros((0, 1), np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return cls(
            task_ids=tuple(r["task_id"] for r in unique),
            repos=np.array([r["repo"] for r in unique], dtype=object),
            seconds=np.array([r["at"] for r in unique], dtype=np.float64),
            vectors=vectors / np.maximum(norms, 1e-12),
            server_now=float(rows[0]["now"]) if rows else 0.0,
            read_at=read_at,
        )

    def beats(
        self,
        query: np.ndarray,
        bar: float,
        *,
        repo: str | None,
        days_back: int | None,
        answered: Collection[Any],
    ) -> bool:
        """Whether a sampled row passing the filters, not in the answer, is more similar to
        ``query`` than ``bar`` (the answer's last row, or the threshold when the answer is
        short of the limit): then the answer is provably not the nearest rows."""
        if not self.task_ids:
            return False
        q = np.asarray(query, dtype=np.float16).astype(np.float32)  # as the server casts it
        q /= max(float(np.linalg.norm(q)), 1e-12)
        # einsum, not BLAS: OpenBLAS threads spin after a call, taking the server's cores
        hits = np.flatnonzero(np.einsum("ij,j->i", self.vectors, q) > bar + CHECK_MARGIN)
        if hits.size and repo is not None:
            hits = hits[self.repos[hits] == repo]
        if hits.size and days_back is not None:
            start = self.server_now + time.monotonic() - self.read_at - days_back * 86_400.0
            hits = hits[self.seconds[hits] >= start + WINDOW_MARGIN]
        return any(self.task_ids[i] not in answered for i in hits)
