"""Route recommendations: which model tier and pool should run a task, how likely it is to
succeed there and what it will cost (:meth:`LearningDatabase.recommend_route
<orb_learning.LearningDatabase.recommend_route>`).

Every option gets a posterior over its success probability (a Beta distribution, see
:mod:`orb_learning._route_estimates` for how history makes it) and expected cost, duration
and quality. The objective then picks one: the most likely to succeed (ties to the
cheaper), the cheapest likely enough (``min_success``), or the best trade of success against
cost (``cost_weight``). With ``explore`` the choice is made on one draw from each posterior
instead of its mean (Thompson sampling), so an option is tried in proportion to the chance
that it is the best one: under-tried options get tried, and stop being tried once history
shows they are worse.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal
from uuid import UUID

from .errors import ArgumentError
from .rows import SimilarExecution

__all__ = ["Candidate", "Evidence", "Objective", "RouteOption", "RouteRecommendation"]

TIE = 0.01
"""Expected successes within one percentage point count as tied: the cheaper option wins."""
Candidate = tuple[str, str]
"""A ``(model_tier, pool_type)`` pair."""
Objective = Literal["success", "min_success", "cost_weight"]


@dataclass(frozen=True)
class Evidence:
    """What stands behind an option's estimate."""

    neighbours: int = 0
    """Executions of this option among the task's nearest past executions."""
    weight: float = 0.0
    """Their similarity-weighted count (what the estimate leans on)."""
    best_similarity: float | None = None
    """The most similar of them (cosine, -1 to 1)."""
    task_type_executions: int = 0
    """Executions of this option's tier at the task's type in the window (the prior)."""
    tier_executions: int = 0
    """Executions of this option's tier in the window."""


@dataclass(frozen=True)
class RouteOption:
    """One candidate with its estimates (``None`` where history says nothing)."""

    model_tier: str
    pool_type: str
    expected_success: float | None
    """Posterior mean of the success probability."""
    success_low: float | None
    success_high: float | None
    """A 90% credible interval of it."""
    expected_cost: float | None
    expected_duration: float | None
    expected_quality: float | None
    evidence: Evidence = field(default_factory=Evidence)
    score: float | None = None
    """What the objective ranked it by: the expected success; expected success minus
    ``cost_weight`` times the expected cost; for ``min_success``, the expected cost
    (lowest first) among the options meeting it."""
    meets_min_success: bool | None = None
    alpha: float | None = None
    beta: float | None = None
    """The Beta posterior of the success probability (what ``explore`` draws from)."""

    @property
    def candidate(self) -> Candidate:
        return (self.model_tier, self.pool_type)

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN never appears: unknowns are None)."""
        return asdict(self)


@dataclass(frozen=True)
class RouteRecommendation:
    """What ``recommend_route`` answers: every option, ranked, and the one to run."""

    recommendation_id: UUID
    options: tuple[RouteOption, ...]
    chosen: RouteOption | None
    similar: list[SimilarExecution]
    """The past executions the estimate leaned on most, most similar first."""
    objective: Objective
    explore: bool
    fallback: bool
    """No history at all: the options are the caller's candidates in the caller's order,
    and the first is chosen."""
    reason: str
    """One sentence on why ``chosen`` was chosen."""
    min_success: float | None = None
    cost_weight: float | None = None


def check_candidates(candidates: Any) -> list[Candidate] | None:
    """``None``, or a non-empty list of distinct (tier, pool) pairs of non-empty strings."""
    if candidates is None:
        return None
    if isinstance(candidates, str | bytes) or not isinstance(candidates, Sequence):
        raise ArgumentError("candidates must be a list of (model_tier, pool_type) pairs")
    pairs: list[Candidate] = []
    for item in candidates:
        if (
            not isinstance(item, Sequence)
            or isinstance(item, str | bytes)
            or len(item) != 2
            or not all(isinstance(part, str) and part.strip() for part in item)
        ):
            raise ArgumentError(
                f"each candidate must be a (model_tier, pool_type) pair, got {item!r}"
            )
        pair = (str(item[0]), str(item[1]))
        if pair not in pairs:
            pairs.append(pair)
    if not pairs:
        raise ArgumentError("candidates must not be empty (None: the pairs history has seen)")
    return pairs


def check_objective(min_success: Any, cost_weight: Any) -> Objective:
    """The objective the arguments ask for; at most one of the two may be given."""
    if min_success is not None and cost_weight is not None:
        raise ArgumentError("give min_success or cost_weight, not both")
    if min_success is not None:
        if not _number(min_success) or not 0.0 <= min_success <= 1.0:
            raise ArgumentError(f"min_success must be a probability in [0, 1], got {min_success!r}")
        return "min_success"
    if cost_weight is not None:
        if not _number(cost_weight) or cost_weight < 0:
            raise ArgumentError(f"cost_weight must be a number >= 0, got {cost_weight!r}")
        return "cost_weight"
    return "success"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def rank(
    options: Sequence[RouteOption],
    objective: Objective,
    *,
    min_success: float | None = None,
    cost_weight: float | None = None,
) -> list[RouteOption]:
    """The options scored and sorted by the objective (unknown estimates last). With
    ``cost_weight``, an option whose cost is unknown (it never ran in the window) is scored
    at the highest cost known among the options: never left out, so that exploration can
    learn it, and never favoured for being unknown."""
    known = [o.expected_cost for o in options if o.expected_cost is not None]
    stand_in = max(known, default=0.0)
    scored = [_scored(o, objective, min_success, cost_weight, stand_in) for o in options]
    ranked = sorted(scored, key=lambda o: _key(o, objective))
    return _cheapest_of_the_tied(ranked) if objective == "success" else ranked


def _cheapest_of_the_tied(ranked: list[RouteOption]) -> list[RouteOption]:
    """The most likely options within :data:`TIE` of the best, cheapest first."""
    if not ranked or ranked[0].score is None:
        return ranked
    best = ranked[0].score
    tied = [o for o in ranked if o.score is not None and o.score >= best - TIE]
    rest = [o for o in ranked if o not in tied]
    by_cost = sorted(tied, key=lambda o: math.inf if o.expected_cost is None else o.expected_cost)
    return [*by_cost, *rest]


def _scored(
    option: RouteOption,
    objective: Objective,
    min_success: float | None,
    weight: float | None,
    stand_in_cost: float,
) -> RouteOption:
    p, cost = option.expected_success, option.expected_cost
    if objective == "success":
        return replace(option, score=p)
    if objective == "cost_weight":
        price = stand_in_cost if cost is None else cost
        return replace(option, score=None if p is None else p - (weight or 0.0) * price)
    meets = None if p is None else p >= (min_success or 0.0)
    return replace(option, score=cost if meets else None, meets_min_success=meets)


def _key(option: RouteOption, objective: Objective) -> tuple[float, ...]:
    p = -1.0 if option.expected_success is None else option.expected_success
    cost = math.inf if option.expected_cost is None else option.expected_cost
    if objective == "min_success":
        if option.meets_min_success:
            return (0.0, cost, -p)
        return (1.0, -p, cost)
    score = -math.inf if option.score is None else option.score
    return (-score, cost)


def choose(
    ranked: Sequence[RouteOption],
    objective: Objective,
    *,
    min_success: float | None,
    cost_weight: float | None,
    explore: bool,
    rng: random.Random,
) -> tuple[RouteOption | None, str]:
    """The option to run, and why. ``explore``: by one draw from each posterior."""
    if not ranked:
        return None, "no candidate to choose from"
    if not explore:
        best = ranked[0]
        return best, _why(best, objective, min_success)
    drawn = [
        replace(o, expected_success=rng.betavariate(o.alpha, o.beta))
        if o.alpha is not None and o.beta is not None
        else o
        for o in ranked
    ]
    pick = rank(drawn, objective, min_success=min_success, cost_weight=cost_weight)[0]
    chosen = next(o for o in ranked if o.candidate == pick.candidate)
    return chosen, (
        f"drawn by Thompson sampling (success {pick.expected_success:.2f} in this draw; "
        f"expected {_percent(chosen.expected_success)})"
        if pick.expected_success is not None
        else "drawn by Thompson sampling"
    )


def _why(best: RouteOption, objective: Objective, min_success: float | None) -> str:
    expected = _percent(best.expected_success)
    if objective == "min_success":
        if best.meets_min_success:
            return (
                f"the cheapest option expected to succeed at least {min_success:.0%} ({expected})"
            )
        return (
            f"no option is expected to succeed {min_success:.0%}: the most likely one ({expected})"
        )
    if objective == "cost_weight":
        return f"the best expected success minus the weighted cost ({expected})"
    return f"the highest expected success ({expected}; within one point, the cheaper)"


def _percent(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0%}"


def fallback(candidates: Sequence[Candidate]) -> tuple[RouteOption, ...]:
    """The caller's candidates, in the caller's order, with nothing known about them."""
    return tuple(
        RouteOption(tier, pool, None, None, None, None, None, None) for tier, pool in candidates
    )
