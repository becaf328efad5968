"""Online learning, replayed (Li, Chu, Langford and Wang, WSDM 2011): the tasks stream in a
random order with their logged tier; a policy chooses, and the step counts only when its
choice equals the logged tier, whose execution then joins the history the policy learns
from. With a uniformly random logging policy the counted steps are an unbiased sample of
what the policy would have met online."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ..database import LearningDatabase
from ._data import Tasks
from ._offline import CANDIDATES, TIERS, WINDOW_DAYS, Logged, execution


@dataclass(frozen=True)
class Replay:
    """A policy's counted steps and their mean success, cost (USD) and reward."""

    policy: str
    steps: int
    success: float
    cost: float
    reward: float
    """Mean success minus ``cost_weight`` x cost."""
    cost_weight: float


def _summary(policy: str, outcomes: list[tuple[int, float]], weight: float) -> Replay:
    steps = len(outcomes)
    success = float(np.mean([s for s, _ in outcomes])) if steps else 0.0
    cost = float(np.mean([c for _, c in outcomes])) if steps else 0.0
    return Replay(policy, steps, success, cost, success - weight * cost, weight)


async def replay_recommender(
    database: LearningDatabase,
    tasks: Tasks,
    vectors: np.ndarray,
    logged: Logged,
    order: np.ndarray,
    *,
    explore: bool,
    cost_weight: float | None,
    seed: int,
) -> Replay:
    """``recommend_route`` as the policy (greedy or Thompson), on an empty database."""
    rng = random.Random(seed)
    outcomes: list[tuple[int, float]] = []
    for i in (int(i) for i in order):
        made = await database.recommend_route(
            tasks.prompt[i], task_type=tasks.task_type[i], repo=tasks.benchmark[i],
            candidates=CANDIDATES, cost_weight=cost_weight, explore=explore, log=False,
            days_back=WINDOW_DAYS, rng=rng,
        )  # fmt: skip
        assert made.chosen is not None
        if made.chosen.model_tier != TIERS[int(logged.tier[i])]:
            continue
        record = execution(tasks, logged, i, seed=seed)
        outcomes.append((int(record.success), record.actual_cost))
        await database.store_execution(record, embedding=vectors[i])
        await database.settle_route_fits()  # a refit started by this step: the same each run
    name = "thompson" if explore else "greedy"
    return _summary(name, outcomes, cost_weight or 0.0)


def replay_baselines(
    tasks: Tasks, logged: Logged, order: np.ndarray, *, cost_weight: float | None
) -> list[Replay]:
    """The logging policy itself (random: every step counts) and per-type greedy (the
    tier with the best Laplace-smoothed rate at the task's type, minus the weighted mean
    cost, from the counted steps so far; ties to the small tier)."""
    weight = cost_weight or 0.0
    logged_outcomes = []
    greedy: list[tuple[int, float]] = []
    counts: dict[tuple[str, str], list[float]] = {}
    for i in (int(i) for i in order):
        tier = TIERS[int(logged.tier[i])]
        outcome, cost = int(tasks.outcome(tier)[i]), float(tasks.cost(tier)[i])
        logged_outcomes.append((outcome, cost))
        values = []
        for t in TIERS:
            s, n, c = counts.get((t, tasks.task_type[i]), [0.0, 0.0, 0.0])
            values.append((s + 1) / (n + 2) - weight * (c / n if n else 0.0))
        choice = TIERS[int(np.argmax(values))]
        if choice == tier:
            greedy.append((outcome, cost))
            cell = counts.setdefault((tier, tasks.task_type[i]), [0.0, 0.0, 0.0])
            cell[0] += outcome
            cell[1] += 1
            cell[2] += cost
    return [
        _summary("random", logged_outcomes, weight),
        _summary("per_type_greedy", greedy, weight),
    ]
