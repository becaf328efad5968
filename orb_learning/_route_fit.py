"""Fitting the route estimates on the history itself (docs/decisions/0010-route-estimates.md).

The prior (:mod:`._route_prior`) comes from the window's tier performance and one
aggregate of the covariates. Then a few hundred history executions are drawn at random;
each is predicted from its own nearest neighbours (itself left out, and taken out of its
type's rate), under every (sharpness, strength) pair of a grid, per option and pooled:

- **per option or pooled**: each option's own neighbours are used only if that beats
  one shift shared by all options by more than a standard error of the rows' differences
  in log-likelihood (otherwise the neighbours inform how hard the task is, and the ranking
  is left to the prior, which they cannot improve: on the MMLU dev data the neighbours'
  gain correlates 0.00-0.02 with a task's own);
- **the pairs**: weighted by their leave-one-out likelihood (pseudo-Bayesian model
  averaging), not the single best: the likelihood surface is flat within its noise, and
  the best pair cost about 0.02 APGR against the average on both data sets.

One SQL statement finds every sampled row's neighbours (a LATERAL nearest-neighbour
search); :class:`FitCache` keeps the model per filter and fits again, in the background,
when it is older than ``ttl`` or the history has grown by half.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import _route_prior as priors
from ._route_estimates import CLIP, Config, Model, Neighbour, residuals
from ._route_prior import TierStats

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger("orb_learning")

SAMPLE_ROWS = 250
MIN_SAMPLE_ROWS = 30
"""Below this the defaults of :class:`Model` are kept: too few outcomes to tell pairs apart."""
SHARPNESS_GRID = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
STRENGTH_GRID = tuple(float(x) for x in np.logspace(-2, 3, 16))
MIN_WEIGHT = 1e-3
FIT_TTL = 900.0
GROWTH = 1.5

_WINDOW = '($2::int IS NULL OR x."timestamp" >= now() - make_interval(hours => 24 * $2::int))'
_REPO = "($3::text IS NULL OR x.repo = $3::text)"
_FIELDS = (
    "x.model_tier, x.pool_type, x.task_type, x.success, length(x.task_description) AS length, "
    "x.complexity_score"
)
SAMPLE_NEIGHBOURS_SQL = f"""\
WITH s AS MATERIALIZED (
    SELECT DISTINCT ON (e.task_id) e.*
    FROM unnest($1::uuid[]) AS start(id)
    CROSS JOIN LATERAL (
        SELECT x.task_id, x.embedding, {_FIELDS}
        FROM executions x
        WHERE x.task_id >= start.id AND x.embedding IS NOT NULL AND {_WINDOW} AND {_REPO}
        ORDER BY x.task_id LIMIT 1) e)
SELECT s.task_id AS sample_id, s.model_tier AS sample_tier, s.pool_type AS sample_pool,
       s.task_type AS sample_type, s.success AS sample_success, s.length AS sample_length,
       s.complexity_score AS sample_complexity, n.*
FROM s CROSS JOIN LATERAL (
    SELECT {_FIELDS}, 1 - (x.embedding <=> s.embedding) AS similarity
    FROM executions x
    WHERE x.task_id <> s.task_id AND x.embedding IS NOT NULL AND {_WINDOW} AND {_REPO}
    ORDER BY x.embedding <=> s.embedding LIMIT $4) n
ORDER BY s.task_id, n.similarity DESC"""


@dataclass(frozen=True)
class SampledRow:
    """A history execution the fit predicts, with its neighbours (itself left out)."""

    model_tier: str
    pool_type: str
    task_type: str | None
    success: bool
    length: int
    complexity: float | None
    neighbours: tuple[Neighbour, ...]


async def sample_with_neighbours(
    connection: asyncpg.Connection,
    *,
    repo: str | None,
    days_back: int | None,
    neighbours: int,
    rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> list[SampledRow]:
    """About ``rows`` history executions at random (the first row at or after a random
    task_id; a fixed ``seed``, so that the same history gives the same fit), each with its
    ``neighbours`` nearest."""
    draw = random.Random(seed)
    starts = [uuid.UUID(int=draw.getrandbits(128)) for _ in range(rows)]
    async with connection.transaction():
        await connection.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        await connection.execute(f"SET LOCAL hnsw.ef_search = {max(neighbours, 100)}")
        found = await connection.fetch(SAMPLE_NEIGHBOURS_SQL, starts, days_back, repo, neighbours)
    grouped: dict[uuid.UUID, list[Neighbour]] = {}
    heads: dict[uuid.UUID, SampledRow] = {}
    for row in found:
        key = row["sample_id"]
        heads.setdefault(key, _sampled(row))
        grouped.setdefault(key, []).append(_neighbour(row))
    return [
        SampledRow(**{**head.__dict__, "neighbours": tuple(grouped[key])})
        for key, head in heads.items()
    ]


def _sampled(row: asyncpg.Record) -> SampledRow:
    complexity = row["sample_complexity"]
    return SampledRow(
        row["sample_tier"], row["sample_pool"], row["sample_type"], bool(row["sample_success"]),
        int(row["sample_length"]), None if complexity is None else float(complexity), (),
    )  # fmt: skip


def _neighbour(row: asyncpg.Record) -> Neighbour:
    complexity = row["complexity_score"]
    return Neighbour(
        row["model_tier"], row["pool_type"], row["task_type"], bool(row["success"]),
        float(row["similarity"]), int(row["length"]),
        None if complexity is None else float(complexity),
    )  # fmt: skip


def fit(
    sample: Sequence[SampledRow],
    cells: Mapping[tuple[str, str | None], TierStats],
    prior: priors.Prior,
    *,
    typed: bool = True,
) -> Model:
    """The model the sample's logged outcomes make most likely (see the module), for
    tasks asked about with their type (``typed``) or without."""
    if len(sample) < MIN_SAMPLE_ROWS:
        return Model(prior)
    p = np.stack([_predictions(row, cells, prior, typed=typed) for row in sample])
    y = np.array([float(row.success) for row in sample])
    ll = np.log(np.where(y[:, None, None, None] == 1.0, p, 1 - p))  # rows x sh x m x own
    pooled, own = (_bma(ll[..., k].sum(axis=0)) for k in (0, 1))
    p_pooled, p_own = ((p[..., k] * w).sum(axis=(1, 2)) for k, w in ((0, pooled), (1, own)))
    share = own_share(y - p_pooled, p_own - p_pooled)
    return Model(prior, _configs(pooled, 1 - share, 0.0) + _configs(own, share, 1.0), len(sample))


def own_share(unexplained: np.ndarray, own_minus_pooled: np.ndarray) -> float:
    """How much of the options' own neighbours' deviation from the pooled estimate to
    keep: the least-squares slope of what the pooled estimate leaves unexplained on that
    deviation, shrunk toward zero by its standard error (positive part), in [0, 1]."""
    e = own_minus_pooled
    spread = float(np.sum(e * e))
    if spread <= 1e-12 or len(e) < 3:
        return 0.0
    slope = float(np.sum(unexplained * e)) / spread
    left = unexplained - slope * e
    se2 = float(np.sum(left * left)) / (len(e) - 1) / spread
    if slope <= 0.0:
        return 0.0
    return min(1.0, slope * max(0.0, 1.0 - se2 / slope**2))


def _bma(total: np.ndarray) -> np.ndarray:
    """Pseudo-BMA weights: exp(each configuration's summed log-likelihood), normalised."""
    weights = np.exp(total - total.max())
    weights[weights < MIN_WEIGHT] = 0.0
    return np.asarray(weights / weights.sum())


def _configs(weights: np.ndarray, scale: float, own: float) -> tuple[Config, ...]:
    if scale <= 0.0:
        return ()
    return tuple(
        Config(SHARPNESS_GRID[i], STRENGTH_GRID[j], own, scale * float(weights[i, j]))
        for i, j in zip(*np.nonzero(weights), strict=True)
    )


def _predictions(
    row: SampledRow,
    cells: Mapping[tuple[str, str | None], TierStats],
    prior: priors.Prior,
    *,
    typed: bool,
) -> np.ndarray:
    """The row's predicted success per (sharpness, strength, pooled or own neighbours)."""
    kind = row.task_type if typed else None
    shift = priors.leave_one_out_shift(cells, prior, row.model_tier, kind, row.success)
    p0 = prior.p0(row.model_tier, kind, row.length, row.complexity, shift)
    r = residuals(row.neighbours, prior)
    similarity = np.maximum(np.array([n.similarity for n in row.neighbours]), 0.0)
    mine = np.array(
        [(n.model_tier, n.pool_type) == (row.model_tier, row.pool_type) for n in row.neighbours],
        dtype=bool,
    )
    strengths = np.array(STRENGTH_GRID)
    out = np.empty((len(SHARPNESS_GRID), len(STRENGTH_GRID), 2))
    for i, sharpness in enumerate(SHARPNESS_GRID):
        w = similarity**sharpness
        out[i, :, 0] = p0 + float(np.sum(w * r)) / (float(np.sum(w)) + strengths)
        out[i, :, 1] = p0 + float(np.sum(w[mine] * r[mine])) / (float(np.sum(w[mine])) + strengths)
    return np.clip(out, CLIP, 1 - CLIP)


@dataclass
class _Fitted:
    prior: priors.Prior
    sample: list[SampledRow]
    models: dict[bool, Model]
    """Per ``typed``: fitted on first use."""
    at: float
    history: int


class FitCache:
    """The fitted :class:`Model` per (repo, window). The first call per filter fits it
    (and waits); after ``ttl`` seconds, or when the history has grown by ``growth`` times,
    the next call starts a refit in the background on a connection of its own
    (``connect``) and is answered by the current model meanwhile, so that a router never
    waits seconds for a refit (3.3 s at a million rows, bench/RESULTS.md)."""

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]] | None = None,
        *,
        ttl: float = FIT_TTL,
        growth: float = GROWTH,
    ) -> None:
        self.ttl = ttl
        self.growth = growth
        self._connect = connect
        self._fitted: dict[tuple[str | None, int | None], _Fitted] = {}
        """Per (repo, window): the prior, the sample and the models fitted on it."""
        self._refits: dict[tuple[str | None, int | None], asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        self._fitted.clear()

    async def settle(self) -> None:
        """Wait for the refits running now (the evaluation's replay, to stay repeatable)."""
        await asyncio.gather(*self._refits.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._refits.values():
            task.cancel()
        await self.settle()

    async def model(
        self,
        connection: asyncpg.Connection,
        *,
        repo: str | None,
        days_back: int | None,
        neighbours: int,
        cells: Mapping[tuple[str, str | None], TierStats],
        typed: bool,
    ) -> Model:
        """The model for tasks asked about with their type (``typed``) or without."""
        history = sum(cell.executions for cell in cells.values())
        key = (repo, days_back)
        async with self._lock:
            known = self._fitted.get(key)
            if known is None or (self._stale(known, history) and self._connect is None):
                known = await _fitted(connection, repo, days_back, neighbours, cells, history)
                self._fitted[key] = known
            elif self._stale(known, history) and key not in self._refits:
                self._start_refit(key, neighbours, cells, history)
            if typed not in known.models:
                known.models[typed] = fit(known.sample, cells, known.prior, typed=typed)
            return known.models[typed]

    def _start_refit(
        self,
        key: tuple[str | None, int | None],
        neighbours: int,
        cells: Mapping[tuple[str, str | None], TierStats],
        history: int,
    ) -> None:
        assert self._connect is not None
        connect = self._connect

        async def refit() -> None:
            try:
                async with connect() as connection:
                    fresh = await _fitted(connection, *key, neighbours, cells, history)
                self._fitted[key] = fresh
            except Exception:  # the current model serves on; retried after the ttl
                logger.warning("route estimates: refit failed, kept the model", exc_info=True)
                self._fitted[key].at = time.monotonic()
            finally:
                self._refits.pop(key, None)

        self._refits[key] = asyncio.get_running_loop().create_task(refit())

    def _stale(self, fitted: _Fitted, history: int) -> bool:
        old = time.monotonic() - fitted.at > self.ttl
        return old or history > self.growth * max(fitted.history, 1)


async def _fitted(
    connection: asyncpg.Connection,
    repo: str | None,
    days_back: int | None,
    neighbours: int,
    cells: Mapping[tuple[str, str | None], TierStats],
    history: int,
) -> _Fitted:
    """The prior (with the covariates' aggregate) and the leave-one-out sample."""
    prior = priors.with_covariates(
        priors.prior(cells), await connection.fetch(priors.COVARIATE_CELLS_SQL, days_back)
    )
    sample = await sample_with_neighbours(
        connection, repo=repo, days_back=days_back, neighbours=neighbours
    )
    return _Fitted(prior, sample, {}, time.monotonic(), history)
