"""The offline protocol: k folds; the other folds are history, logged by a uniformly random
policy (ONE tier per task, as an exploring orchestrator would log it); the fold's tasks are
new, judged against both known outcomes. The recommender and the baselines (random, the
per-task-type rates of ``get_tier_performance``, kNN alone, the oracle) are scored on the
same folds from the same history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from ..database import LearningDatabase
from ..models import ExecutionRecord
from ..rows import SimilarExecution
from . import _metrics as metrics
from ._data import Tasks

TIERS = ("small", "large")
POOL = "default"
CANDIDATES = [(tier, POOL) for tier in TIERS]
HISTORY_DAYS = 60
"""History timestamps are spread over this many days before now."""
WINDOW_DAYS = 90
KNN_NEIGHBOURS = 150
NAMESPACE = uuid.UUID("7f1c7f0e-5b1e-4c61-9a51-0f3f6c2d9a10")
METHODS = ("recommender", "per_task_type", "knn", "random", "oracle")


@dataclass(frozen=True)
class Logged:
    """The logging policy's draws: each task's fold, its logged tier and its timestamp."""

    folds: list[np.ndarray]
    tier: np.ndarray
    """0 small, 1 large."""
    timestamp: list[datetime]

    @classmethod
    def draw(cls, tasks: Tasks, *, folds: int, seed: int) -> Logged:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(tasks))
        tier = rng.integers(0, 2, len(tasks))
        now = datetime.now(UTC)
        ages = rng.uniform(60.0, HISTORY_DAYS * 86_400.0, len(tasks))
        return cls(
            folds=[np.sort(f) for f in np.array_split(order, folds)],
            tier=tier,
            timestamp=[now - timedelta(seconds=float(a)) for a in ages],
        )


def execution(tasks: Tasks, logged: Logged, i: int, *, seed: int) -> ExecutionRecord:
    """Task ``i`` as the one execution its logged tier left."""
    tier = TIERS[int(logged.tier[i])]
    cost = float(tasks.cost(tier)[i])
    return ExecutionRecord(
        task_id=uuid.uuid5(NAMESPACE, f"{seed}:{i}:{tasks.prompt[i]}"),
        task_type=tasks.task_type[i],
        task_description=tasks.prompt[i],
        repo=tasks.benchmark[i],
        model_tier=tier,
        pool_type=POOL,
        routing_confidence=0.5,
        success=bool(tasks.outcome(tier)[i]),
        duration_seconds=1.0,  # not in the data
        cost_estimate=cost,
        actual_cost=cost,
        timestamp=logged.timestamp[i],
    )


@dataclass
class Predictions:
    """Per new task and method: P(success) on each tier, stacked over the folds."""

    index: list[int] = field(default_factory=list)
    fold: list[int] = field(default_factory=list)
    small: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})
    large: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})

    def add(self, i: int, fold: int, method: str, small: float, large: float) -> None:
        if method == METHODS[0]:
            self.index.append(i)
            self.fold.append(fold)
        self.small[method].append(small)
        self.large[method].append(large)


async def predict_fold(
    database: LearningDatabase,
    tasks: Tasks,
    vectors: np.ndarray,
    logged: Logged,
    fold: int,
    predictions: Predictions,
    *,
    seed: int,
) -> None:
    """Store the fold's history, then predict each of its tasks with every method."""
    new = logged.folds[fold]
    history = np.setdiff1d(np.arange(len(tasks)), new)
    records = [execution(tasks, logged, int(i), seed=seed) for i in history]
    await database.store_executions(records, embeddings=vectors[history])
    await database.refresh_views()
    rates = await _type_rates(database, set(tasks.benchmark))
    for i in (int(i) for i in new):
        prompt, kind, repo = tasks.prompt[i], tasks.task_type[i], tasks.benchmark[i]
        made = await database.recommend_route(
            prompt, task_type=kind, repo=repo, candidates=CANDIDATES, log=False,
            days_back=WINDOW_DAYS,
        )  # fmt: skip
        p = {o.model_tier: o.expected_success for o in made.options}
        predictions.add(i, fold, "recommender", p["small"] or 0.5, p["large"] or 0.5)
        predictions.add(i, fold, "per_task_type", *(_rate(rates, repo, t, kind) for t in TIERS))
        near = await database.find_similar_executions(
            prompt, repo=repo, limit=KNN_NEIGHBOURS, days_back=WINDOW_DAYS, threshold=-1.0
        )
        predictions.add(i, fold, "knn", *(_knn(near, t) for t in TIERS))
        predictions.add(i, fold, "random", 0.5, 0.5)
        predictions.add(i, fold, "oracle", float(tasks.small[i]), float(tasks.large[i]))


Rates = dict[tuple[str, str, str | None], tuple[int, int]]


async def _type_rates(database: LearningDatabase, repos: Set[str]) -> Rates:
    """(repo, tier, task type or None for all types) -> (successes, executions)."""
    rates: Rates = {}
    for repo in repos:
        for row in await database.get_tier_performance(repo=repo, days_back=WINDOW_DAYS):
            cell = (int(row["successful_count"]), int(row["total_executions"]))
            rates[(repo, row["model_tier"], row["task_type"])] = cell
            s, n = rates.get((repo, row["model_tier"], None), (0, 0))
            rates[(repo, row["model_tier"], None)] = (s + cell[0], n + cell[1])
    return rates


def _rate(rates: Rates, repo: str, tier: str, kind: str) -> float:
    """The view's success rate of the tier at the type (else over all types, else 0.5)."""
    successes, executions = rates.get((repo, tier, kind)) or rates.get((repo, tier, None), (0, 0))
    return successes / executions if executions else 0.5


def _knn(near: Sequence[SimilarExecution], tier: str) -> float:
    """Similarity-weighted success of the tier's executions among the nearest (no prior)."""
    mine = [(max(r["similarity"], 0.0), r["success"]) for r in near if r["model_tier"] == tier]
    total = sum(w for w, _ in mine)
    return sum(w for w, s in mine if s) / total if total > 0 else 0.5


@dataclass(frozen=True)
class Scores:
    """One method's figures: the mean over the folds that have a gap to recover (the large
    tier better than the small one on the fold's tasks), calibration over all predictions."""

    method: str
    apgr: float
    apgr_folds: list[float]
    apgr_pooled: float
    """One curve over every task's out-of-fold prediction."""
    cpt50: float
    cpt80: float
    cost_at_large_minus_1pt: float | None
    """USD per task at the large tier's quality minus one point (None: never reached)."""
    ece: float | None
    brier: float | None


def score(tasks: Tasks, predictions: Predictions) -> list[Scores]:
    """Every method's figures from the stacked predictions."""
    index, folds = np.array(predictions.index), np.array(predictions.fold)
    out = []
    for method in METHODS:
        ps = np.array(predictions.small[method], dtype=np.float64)
        pl = np.array(predictions.large[method], dtype=np.float64)
        curves = [
            _curve(tasks, index[folds == f], pl[folds == f] - ps[folds == f])
            for f in np.unique(folds)
        ]
        curves = [c for c in curves if c.large_quality > c.small_quality] or curves
        costs = [metrics.cost_at_quality(c, c.large_quality - 0.01) for c in curves]
        predicted = np.concatenate([ps, pl])
        outcome = np.concatenate([tasks.small[index], tasks.large[index]]).astype(np.float64)
        calibrated = method not in ("random", "oracle")
        out.append(
            Scores(
                method=method,
                apgr=float(np.mean([metrics.apgr(c) for c in curves])),
                apgr_folds=[round(metrics.apgr(c), 6) for c in curves],
                apgr_pooled=metrics.apgr(_curve(tasks, index, pl - ps)),
                cpt50=float(np.mean([metrics.calls_to_recover(c, 0.5) for c in curves])),
                cpt80=float(np.mean([metrics.calls_to_recover(c, 0.8) for c in curves])),
                cost_at_large_minus_1pt=None
                if None in costs
                else float(np.mean([c for c in costs if c is not None])),
                ece=metrics.expected_calibration_error(predicted, outcome) if calibrated else None,
                brier=metrics.brier(predicted, outcome) if calibrated else None,
            )
        )
    return out


def _curve(tasks: Tasks, i: np.ndarray, scores: np.ndarray) -> metrics.Curve:
    return metrics.curve(
        scores, tasks.small[i], tasks.large[i], tasks.cost("small")[i], tasks.cost("large")[i]
    )
