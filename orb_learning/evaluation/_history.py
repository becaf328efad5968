"""The evaluation on a store's own history, by a time split: the executions of the last
``test_days`` days are the new tasks, everything before is the history they may use
(copied, embeddings and all, into a scratch database, so that no test row informs its own
recommendation). Only the tier that ran each test task is known, so no routing curve can be
drawn: what can be measured honestly is how well each method predicts the outcome of the
tier that ran (calibration, Brier, log loss) and how the executions that followed the
recommendation fared against those that did not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from ..database import LearningDatabase
from ..models import ExecutionRecord
from . import _metrics as metrics

_ROWS = """\
SELECT e.*, e.embedding::real[] AS vector FROM executions e
WHERE e."timestamp" >= $1 AND e."timestamp" < $2 AND e.embedding IS NOT NULL
ORDER BY e."timestamp", e.task_id"""


@dataclass(frozen=True)
class HistoryScores:
    """One method's predictions of the logged tier's outcome on the test tasks."""

    method: str
    tasks: int
    ece: float
    brier: float
    log_loss: float


@dataclass(frozen=True)
class HistoryEvaluation:
    """What :func:`evaluate_history` measured."""

    history: int
    tasks: int
    split_at: datetime
    scores: list[HistoryScores]
    followed: int
    """Test tasks that ran the option the recommender chooses."""
    success_followed: float | None
    success_not_followed: float | None


async def read_split(
    source: LearningDatabase, *, test_days: int, days_back: int
) -> tuple[datetime, list[tuple[ExecutionRecord, np.ndarray]], list[ExecutionRecord]]:
    """The history (records with their stored embeddings) and the test records."""
    async with source.connection() as connection:
        now = await connection.fetchval("SELECT now()")
        split = now - timedelta(days=test_days)
        start = split - timedelta(days=days_back)
        history = [_record(r) for r in await connection.fetch(_ROWS, start, split)]
        tests = [_record(r)[0] for r in await connection.fetch(_ROWS, split, now)]
    return split, history, tests


def _record(row: object) -> tuple[ExecutionRecord, np.ndarray]:
    values = dict(row)  # type: ignore[call-overload]
    vector = np.asarray(values.pop("vector"), dtype=np.float32)
    values.pop("embedding", None)
    values.pop("uploaded_at", None)
    return ExecutionRecord.model_validate(values), vector


async def predict_history(
    scratch: LearningDatabase,
    history: list[tuple[ExecutionRecord, np.ndarray]],
    tests: list[ExecutionRecord],
    *,
    split_at: datetime,
) -> HistoryEvaluation:
    """Store the history in ``scratch``, then predict each test task's logged tier."""
    for start in range(0, len(history), 5_000):
        chunk = history[start : start + 5_000]
        await scratch.store_executions(
            [r for r, _ in chunk], embeddings=np.stack([v for _, v in chunk])
        )
    await scratch.refresh_views()
    predicted: dict[str, list[float]] = {"recommender": [], "per_task_type": []}
    outcomes: list[float] = []
    followed: list[bool] = []
    rates = {
        (row["model_tier"], row["task_type"]): float(row["success_rate"])
        for row in await scratch.get_tier_performance(days_back=100_000)
    }
    for record in tests:
        made = await scratch.recommend_route(
            record.task_description, task_type=record.task_type, repo=record.repo,
            days_back=None, log=False,
        )  # fmt: skip
        ran = next((o for o in made.options if o.candidate == _pair(record)), None)
        if ran is None or ran.expected_success is None:
            continue  # a tier or pool the history never saw
        predicted["recommender"].append(ran.expected_success)
        predicted["per_task_type"].append(rates.get((record.model_tier, record.task_type), 0.5))
        outcomes.append(float(record.success))
        followed.append(made.chosen is not None and made.chosen.candidate == _pair(record))
    return _summary(
        len(history), split_at, predicted, np.array(outcomes, dtype=float),
        np.array(followed, dtype=bool),
    )  # fmt: skip


def _pair(record: ExecutionRecord) -> tuple[str, str]:
    return (record.model_tier, record.pool_type)


def _summary(
    history: int,
    split_at: datetime,
    predicted: dict[str, list[float]],
    outcome: np.ndarray,
    followed: np.ndarray,
) -> HistoryEvaluation:
    scores = []
    for method, values in predicted.items():
        p = np.clip(np.array(values, dtype=np.float64), 1e-6, 1 - 1e-6)
        if len(p) == 0:
            continue
        loss = -float(np.mean(outcome * np.log(p) + (1 - outcome) * np.log(1 - p)))
        ece, brier = metrics.expected_calibration_error(p, outcome), metrics.brier(p, outcome)
        scores.append(HistoryScores(method, len(p), ece, brier, loss))
    return HistoryEvaluation(
        history=history,
        tasks=len(outcome),
        split_at=split_at,
        scores=scores,
        followed=int(followed.sum()),
        success_followed=float(outcome[followed].mean()) if followed.any() else None,
        success_not_followed=float(outcome[~followed].mean()) if (~followed).any() else None,
    )
