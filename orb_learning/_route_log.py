"""The recommendations' log: one row per ``recommend_route(log=True)``, and the view that
joins each with the executions that followed it (``executions.recommendation_id``), so that
psql answers "how good were the recommendations last week, and how often were they
ignored"."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

    from .routing import RouteRecommendation

OUTCOMES_VIEW = "route_recommendation_outcomes"
OUTCOMES_V1 = f"""\
CREATE VIEW {OUTCOMES_VIEW} AS
SELECT r.recommendation_id,
       r.created_at,
       r.task_type,
       r.repo,
       r.objective,
       r.explore,
       r.fallback,
       r.chosen_tier,
       r.chosen_pool,
       r.expected_success,
       r.expected_cost,
       e.task_id,
       e.model_tier AS ran_tier,
       e.pool_type AS ran_pool,
       e.task_id IS NOT NULL AS executed,
       e.model_tier IS NOT DISTINCT FROM r.chosen_tier
           AND e.pool_type IS NOT DISTINCT FROM r.chosen_pool AS followed,
       e.success,
       e.actual_cost,
       e.duration_seconds,
       e.quality_score
FROM route_recommendations r
LEFT JOIN executions e ON e.recommendation_id = r.recommendation_id"""
OUTCOMES_V1_COMMENT = (
    f"COMMENT ON VIEW {OUTCOMES_VIEW} IS 'Each route recommendation with the executions that "
    "carried its recommendation_id: executed (an execution came), followed (it ran the chosen "
    "tier and pool), and how it went. A recommendation nobody acted on has one row with "
    "executed false.'"
)
DROP_OUTCOMES_V1 = f"DROP VIEW IF EXISTS {OUTCOMES_VIEW}"

INSERT = """\
INSERT INTO route_recommendations
    (recommendation_id, task_description, task_type, repo, complexity_score, days_back,
     objective, min_success, cost_weight, explore, fallback, chosen_tier, chosen_pool,
     expected_success, expected_cost, options)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (recommendation_id) DO NOTHING"""


async def record(
    connection: asyncpg.Connection,
    recommendation: RouteRecommendation,
    *,
    task_description: str,
    task_type: str | None,
    repo: str | None,
    complexity_score: int | None,
    days_back: int | None,
) -> None:
    """Write the recommendation (idempotent by its id)."""
    chosen = recommendation.chosen
    options: list[dict[str, Any]] = [option.as_json() for option in recommendation.options]
    await connection.execute(
        INSERT,
        recommendation.recommendation_id,
        task_description,
        task_type,
        repo,
        complexity_score,
        days_back,
        recommendation.objective,
        recommendation.min_success,
        recommendation.cost_weight,
        recommendation.explore,
        recommendation.fallback,
        None if chosen is None else chosen.model_tier,
        None if chosen is None else chosen.pool_type,
        None if chosen is None else chosen.expected_success,
        None if chosen is None else chosen.expected_cost,
        json.loads(json.dumps(options, allow_nan=False)),
    )
