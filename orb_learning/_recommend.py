"""``recommend_route``: one search, the analytics of the window, the estimates, the choice and
the log row (see :mod:`orb_learning.routing` for the objectives and
:mod:`._route_estimates` for the estimates). All but the log row are reads, on the
connection the caller chose (a replica's by default); the log row is the primary's.

Per call: the task's :data:`NEIGHBOURS` nearest past executions (the search of
``find_similar_executions``, with its filters and its exact-or-HNSW path choice, no
threshold), the tier performance over the window (one analytics query, all repos: the
repo filter acts through the neighbours), and from caches the candidate pairs seen in the
window and the fitted model (:mod:`._route_fit`).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from . import (
    _analytics as analytics,
    _arguments as arguments,
    _route_log as route_log,
    _search as search,
)
from .errors import ArgumentError
from .routing import (
    Candidate,
    Evidence,
    Objective,
    RouteOption,
    RouteRecommendation,
    check_candidates,
    check_objective,
    choose,
    fallback,
    rank,
)
from .rows import SimilarExecution

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

    from ._route_estimates import Neighbour, Posterior
    from ._route_fit import FitCache

NEIGHBOURS = 150
"""Nearest past executions per recommendation (the issue's 100-200; the fit's weights make
the far ones count little, so more only costs search time)."""
SIMILAR_SHOWN = 5
PAIRS_TTL = 300.0

PAIRS_SQL = """\
SELECT model_tier, pool_type, count(*) AS executions
FROM executions
WHERE ($1::int IS NULL OR "timestamp" >= now() - make_interval(hours => 24 * $1::int))
  AND ($2::text IS NULL OR repo = $2::text)
GROUP BY model_tier, pool_type
ORDER BY count(*) DESC, model_tier, pool_type"""


@dataclass(frozen=True)
class RouteRequest:
    """A checked ``recommend_route`` call."""

    task_description: str
    task_type: str | None
    repo: str | None
    complexity_score: int | None
    candidates: list[Candidate] | None
    objective: Objective
    min_success: float | None
    cost_weight: float | None
    explore: bool
    days_back: int | None
    log: bool


def request(
    task_description: Any,
    *,
    task_type: Any,
    repo: Any,
    complexity_score: Any,
    candidates: Any,
    min_success: Any,
    cost_weight: Any,
    explore: Any,
    days_back: Any,
    log: Any,
) -> RouteRequest:
    """The arguments checked (:class:`~orb_learning.errors.ArgumentError` names the first
    wrong one)."""
    arguments.text("task_description", task_description)
    for name, value in (("task_type", task_type), ("repo", repo)):
        arguments.text(name, value, allow_none=True)
        if value is not None and not value.strip():
            raise ArgumentError(f"{name} must not be empty (None: any)")
    complexity = arguments.integer(
        "complexity_score", complexity_score, minimum=0, maximum=100, allow_none=True
    )
    objective = check_objective(min_success, cost_weight)
    for name, flag in (("explore", explore), ("log", log)):
        if not isinstance(flag, bool):
            raise ArgumentError(f"{name} must be True or False, got {flag!r}")
    return RouteRequest(
        task_description=task_description,
        task_type=task_type,
        repo=repo,
        complexity_score=complexity,
        candidates=check_candidates(candidates),
        objective=objective,
        min_success=None if min_success is None else float(min_success),
        cost_weight=None if cost_weight is None else float(cost_weight),
        explore=explore,
        days_back=arguments.window_or_all(days_back),
        log=log,
    )


class RouteState:
    """What recommendations keep between calls: the fitted hyperparameters and the
    candidate pairs per filter. ``connect`` gives the background refits their connection:
    they only read, so a replica's serves."""

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]] | None = None,
    ) -> None:
        self._connect = connect
        self._fits: FitCache | None = None
        self._pairs: dict[tuple[str | None, int | None], tuple[float, list[Candidate]]] = {}

    @property
    def fits(self) -> FitCache:
        """The fitted models (numpy and scipy load with the first recommendation, not with
        the package)."""
        if self._fits is None:
            from ._route_fit import FitCache

            self._fits = FitCache(self._connect)
        return self._fits

    async def settle(self) -> None:
        if self._fits is not None:
            await self._fits.settle()

    async def close(self) -> None:
        if self._fits is not None:
            await self._fits.close()

    def forget(self) -> None:
        """Drop what was learned (the next call refits): after history was replaced."""
        if self._fits is not None:
            self._fits.forget()
        self._pairs.clear()

    async def pairs(
        self, connection: asyncpg.Connection, repo: str | None, days_back: int | None
    ) -> list[Candidate]:
        """The (tier, pool) pairs of the window, most used first; all history's when the
        filters hold none."""
        key = (repo, days_back)
        cached = self._pairs.get(key)
        if cached is not None and time.monotonic() - cached[0] < PAIRS_TTL:
            return cached[1]
        rows = await connection.fetch(PAIRS_SQL, days_back, repo)
        if not rows and (repo is not None or days_back is not None):
            rows = await connection.fetch(PAIRS_SQL, None, None)
        found = [(r["model_tier"], r["pool_type"]) for r in rows]
        if found:
            self._pairs[key] = (time.monotonic(), found)
        return found


async def recommend(
    connection: asyncpg.Connection,
    query: np.ndarray,
    request: RouteRequest,
    *,
    tuning: search.SearchTuning,
    estimates: search.PlannerEstimates,
    state: RouteState,
    rng: random.Random,
) -> RouteRecommendation:
    """The recommendation for a checked request: reads only (the log is :func:`log`)."""
    from ._route_estimates import estimate
    from ._route_prior import tier_stats

    found = await search.find_similar(
        connection, query, repo=request.repo, limit=NEIGHBOURS, days_back=request.days_back,
        threshold=-1.0, tuning=neighbour_tuning(tuning), estimates=estimates,
    )  # fmt: skip
    window = arguments.history_days() if request.days_back is None else request.days_back
    cells = tier_stats(
        await analytics.tier_performance(connection, repo=None, days_back=window, fresh=True)
    )
    candidates = request.candidates or await state.pairs(
        connection, request.repo, request.days_back
    )
    if not cells or not candidates:
        recommendation = _fallback(request, candidates)
    else:
        model = await state.fits.model(
            connection, repo=request.repo, days_back=request.days_back,
            neighbours=NEIGHBOURS, cells=cells, typed=request.task_type is not None,
        )  # fmt: skip
        task = (request.task_type, len(request.task_description), request.complexity_score)
        neighbours = [_neighbour(row) for row in found]
        posteriors = estimate(candidates, neighbours, cells, task, model)
        options = [_option(candidate, posteriors[candidate]) for candidate in candidates]
        recommendation = _chosen(request, options, found, rng)
    return recommendation


async def log(
    connection: asyncpg.Connection, recommendation: RouteRecommendation, request: RouteRequest
) -> None:
    """Write the recommendation to ``route_recommendations`` (on the primary)."""
    await route_log.record(
        connection, recommendation, task_description=request.task_description,
        task_type=request.task_type, repo=request.repo,
        complexity_score=request.complexity_score, days_back=request.days_back,
    )  # fmt: skip


def neighbour_tuning(tuning: search.SearchTuning) -> search.SearchTuning:
    """The search's tuning for the estimate's neighbours: no re-ranking of extra candidates
    and no sample check. An estimate over 150 neighbours weighted by similarity barely moves
    when a few of them are the 160th nearest instead of the 150th, and the defaults' four
    candidates per result cost 42 ms a search at 100,000 rows against 4 ms for the ten
    nearest (docs/decisions/0010-route-estimates.md)."""
    return replace(tuning, candidates_per_result=1, check_sample_rows=0)


def _neighbour(row: dict[str, Any]) -> Neighbour:
    from ._route_estimates import Neighbour

    complexity = row["complexity_score"]
    return Neighbour(
        model_tier=row["model_tier"],
        pool_type=row["pool_type"],
        task_type=row["task_type"],
        success=bool(row["success"]),
        length=len(row["task_description"]),
        complexity=None if complexity is None else float(complexity),
        similarity=float(row["similarity"]),
        cost=float(row["actual_cost"] or 0.0),
        duration=float(row["duration_seconds"] or 0.0),
        quality=None if row["quality_score"] is None else float(row["quality_score"]),
    )


def _option(candidate: Candidate, posterior: Posterior) -> RouteOption:
    return RouteOption(
        model_tier=candidate[0],
        pool_type=candidate[1],
        expected_success=posterior.mean,
        success_low=posterior.low,
        success_high=posterior.high,
        expected_cost=posterior.cost,
        expected_duration=posterior.duration,
        expected_quality=posterior.quality,
        evidence=Evidence(
            neighbours=posterior.neighbours,
            weight=round(posterior.weight, 6),
            best_similarity=posterior.best_similarity,
            task_type_executions=posterior.type_executions,
            tier_executions=posterior.tier_executions,
        ),
        alpha=posterior.alpha,
        beta=posterior.beta,
    )


def _chosen(
    request: RouteRequest,
    options: Sequence[RouteOption],
    found: list[dict[str, Any]],
    rng: random.Random,
) -> RouteRecommendation:
    ranked = rank(
        options, request.objective, min_success=request.min_success,
        cost_weight=request.cost_weight,
    )  # fmt: skip
    chosen, reason = choose(
        ranked, request.objective, min_success=request.min_success,
        cost_weight=request.cost_weight, explore=request.explore, rng=rng,
    )  # fmt: skip
    return RouteRecommendation(
        recommendation_id=uuid.uuid4(),
        options=tuple(ranked),
        chosen=chosen,
        similar=cast("list[SimilarExecution]", found[:SIMILAR_SHOWN]),
        objective=request.objective,
        explore=request.explore,
        fallback=False,
        reason=reason,
        min_success=request.min_success,
        cost_weight=request.cost_weight,
    )


def _fallback(request: RouteRequest, candidates: Sequence[Candidate]) -> RouteRecommendation:
    options = fallback(candidates)
    return RouteRecommendation(
        recommendation_id=uuid.uuid4(),
        options=options,
        chosen=options[0] if options else None,
        similar=[],
        objective=request.objective,
        explore=request.explore,
        fallback=True,
        reason=(
            "no history in the window: the first of the caller's candidates"
            if options
            else "no history and no candidates: nothing to recommend"
        ),
        min_success=request.min_success,
        cost_weight=request.cost_weight,
    )
