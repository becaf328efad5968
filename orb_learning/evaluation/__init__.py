"""Offline evaluation of route recommendations on real outcome data
(``orb-learning evaluate-routing``; docs/routing.md says how to read it).

:func:`evaluate_routing` runs the protocol of :mod:`._offline` (k folds, one logged tier per
history task, the recommender against random, per-task-type, kNN-alone and oracle routing:
APGR, CPT(50%), CPT(80%), cost at the large tier's quality minus one point, ECE, Brier) and
the replay of :mod:`._replay` (greedy and Thompson sampling learning online, against the
random logging policy and per-type greedy), each on scratch databases of its own.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..database import LearningDatabase
from ..embeddings import Embedder, SentenceTransformerEmbedder
from . import _offline as offline, _replay as replay
from ._data import Tasks, load
from ._history import HistoryEvaluation, predict_history, read_split
from ._offline import Scores
from ._replay import Replay
from ._scratch import NewDatabase, scratch_databases

__all__ = ["HistoryEvaluation", "RoutingEvaluation", "evaluate_history", "evaluate_routing", "load"]

REPLAY_COST_WEIGHT = 10.0
"""Success per USD in the replay's second objective: at the data's prices a large call
costs about 0.01 USD more, so 10 per USD weighs it at a tenth of a success point."""


@dataclass(frozen=True)
class RoutingEvaluation:
    """What :func:`evaluate_routing` measured."""

    data: str
    tasks: int
    folds: int
    seed: int
    small_success: float
    large_success: float
    offline: list[Scores]
    replay: list[Replay]
    seconds: float

    def method(self, name: str) -> Scores:
        return next(s for s in self.offline if s.method == name)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def evaluate_routing(
    data: str | Path,
    *,
    folds: int = 5,
    seed: int = 0,
    limit: int | None = None,
    replay_tasks: int | None = None,
    cost_weight: float = REPLAY_COST_WEIGHT,
    server_url: str | None = None,
    embedder: Embedder | None = None,
) -> RoutingEvaluation:
    """Evaluate ``recommend_route`` on an outcome file (``limit``: a random slice of it;
    ``replay_tasks``: the replay's stream length, default all, 0 for none)."""
    started = time.perf_counter()
    tasks = load(Path(data), limit=limit, seed=seed)
    if not 2 <= folds <= len(tasks) // 2:
        from ..errors import ArgumentError

        raise ArgumentError(f"folds must be between 2 and {len(tasks) // 2}, got {folds}")
    model = embedder or SentenceTransformerEmbedder()
    logged = offline.Logged.draw(tasks, folds=folds, seed=seed)
    async with scratch_databases(server_url) as new_database:
        vectors = await _vectors(new_database, model, tasks)
        predictions = offline.Predictions()
        for fold in range(folds):
            async with _open(await new_database(), model) as database:
                await offline.predict_fold(
                    database, tasks, vectors, logged, fold, predictions, seed=seed
                )
        replays = await _replays(
            new_database, model, tasks, vectors, logged,
            count=len(tasks) if replay_tasks is None else replay_tasks,
            cost_weight=cost_weight, seed=seed,
        )  # fmt: skip
    return RoutingEvaluation(
        data=str(data),
        tasks=len(tasks),
        folds=folds,
        seed=seed,
        small_success=float(tasks.small.mean()),
        large_success=float(tasks.large.mean()),
        offline=offline.score(tasks, predictions),
        replay=replays,
        seconds=time.perf_counter() - started,
    )


async def evaluate_history(
    source: LearningDatabase,
    *,
    test_days: int = 7,
    days_back: int = 90,
    server_url: str | None = None,
    embedder: Embedder | None = None,
) -> HistoryEvaluation:
    """Evaluate on ``source``'s own executions: the last ``test_days`` days are the new
    tasks, the ``days_back`` days before them the history (copied into a scratch database
    on ``server_url``'s server, else on an embedded server in a temporary directory)."""
    from .._arguments import integer

    integer("test_days", test_days, minimum=1, maximum=3650)
    integer("days_back", days_back, minimum=1, maximum=36500)
    split_at, history, tests = await read_split(source, test_days=test_days, days_back=days_back)
    model = embedder or SentenceTransformerEmbedder()
    async with scratch_databases(server_url) as new_database:
        scratch = _open(await new_database(), model)
        async with scratch:
            return await predict_history(scratch, history, tests, split_at=split_at)


def _open(url: str, model: Embedder) -> LearningDatabase:
    return LearningDatabase(url, embedder=model, redact=False, migrate_on_start=False)


async def _vectors(new_database: NewDatabase, model: Embedder, tasks: Tasks) -> np.ndarray:
    async with _open(await new_database(), model) as database:
        return await database.embed(tasks.prompt)


async def _replays(
    new_database: NewDatabase,
    model: Embedder,
    tasks: Tasks,
    vectors: np.ndarray,
    logged: offline.Logged,
    *,
    count: int,
    cost_weight: float,
    seed: int,
) -> list[Replay]:
    if count <= 0:
        return []
    order = np.random.default_rng(seed + 1).permutation(len(tasks))[:count]
    results = []
    for weight in (None, cost_weight):
        results += replay.replay_baselines(tasks, logged, order, cost_weight=weight)
        for explore in (False, True):
            async with _open(await new_database(), model) as database:
                results.append(
                    await replay.replay_recommender(
                        database, tasks, vectors, logged, order,
                        explore=explore, cost_weight=weight, seed=seed,
                    )
                )  # fmt: skip
    return results
