"""What the tools return, as pydantic models: the SDK publishes each as the tool's output
schema and sends the value as structured content (and as JSON text, for older clients).

They mirror the library's rows (:mod:`orb_learning.rows`, :mod:`orb_learning.routing`);
tests/test_mcp.py checks that their fields stay the same. Each list is wrapped in an object,
since a tool's structured content is an object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class SimilarExecution(BaseModel):
    """A stored execution (its columns, as stored) and its cosine similarity to the task."""

    task_id: UUID
    timestamp: datetime
    task_type: str
    task_description: str
    repo: str
    file_count: int
    estimated_tokens: int
    model_tier: str
    pool_type: str
    swarm_topology: str | None
    routing_confidence: float
    complexity_score: int
    success: bool
    duration_seconds: float
    quality_score: int | None
    cost_estimate: float
    actual_cost: float
    error_type: str | None
    error_message: str | None
    user_accepted: bool | None
    user_rating: int | None
    peak_memory_mb: float | None
    cpu_time_seconds: float | None
    solution_summary: str | None
    metadata: dict[str, Any]
    recommendation_id: UUID | None
    similarity: float = Field(description="Cosine similarity to the task, -1 to 1")


class SimilarExecutions(BaseModel):
    executions: list[SimilarExecution] = Field(description="Most similar first")


class TierRow(BaseModel):
    """One model tier and task type over the window."""

    model_tier: str
    task_type: str
    repo: str | None
    total_executions: int
    successful_count: int
    success_rate: float
    avg_duration: float
    avg_cost: float
    avg_quality: float | None


class TierPerformance(BaseModel):
    tiers: list[TierRow]


class PoolRow(BaseModel):
    """One worker pool over the window."""

    pool_type: str
    repo: str | None
    total_tasks: int
    successful_tasks: int
    success_rate: float
    avg_duration: float
    avg_cost: float


class PoolPerformance(BaseModel):
    pools: list[PoolRow]


class PatternRow(BaseModel):
    """One solution summary: how often it was used, how often it worked, where."""

    solution_summary: str
    repo: str | None
    usage_count: int
    success_count: int
    success_rate: float
    avg_quality: float | None
    repos: list[str]
    task_types: list[str]
    first_seen: datetime
    last_seen: datetime
    pattern_id: UUID


class SolutionPatterns(BaseModel):
    patterns: list[PatternRow] = Field(description="By success rate, then usage count")


class Evidence(BaseModel):
    """What stands behind an option's estimate."""

    neighbours: int = Field(description="Its executions among the task's nearest")
    weight: float = Field(description="Their similarity-weighted count")
    best_similarity: float | None
    task_type_executions: int = Field(description="Its tier's executions at the task type")
    tier_executions: int = Field(description="Its tier's executions in the window")


class RouteOption(BaseModel):
    """One candidate (tier, pool) with its estimates; None where history says nothing."""

    model_tier: str
    pool_type: str
    expected_success: float | None = Field(description="Posterior mean success probability")
    success_low: float | None = Field(description="90% credible interval, low end")
    success_high: float | None = Field(description="90% credible interval, high end")
    expected_cost: float | None
    expected_duration: float | None
    expected_quality: float | None
    evidence: Evidence
    score: float | None = Field(description="What the objective ranked it by")
    meets_min_success: bool | None
    alpha: float | None
    beta: float | None


class RouteRecommendation(BaseModel):
    """Every option, ranked, and the one to run."""

    recommendation_id: UUID = Field(description="Store it with the execution that follows")
    logged: bool = Field(description="Whether route_recommendations holds this recommendation")
    options: list[RouteOption]
    chosen: RouteOption | None
    similar: list[SimilarExecution] = Field(description="The executions it leaned on most")
    objective: str = Field(description="success, min_success or cost_weight")
    explore: bool
    fallback: bool = Field(description="No history: the first candidate was chosen")
    reason: str = Field(description="Why the chosen option was chosen")
    min_success: float | None
    cost_weight: float | None


class FeedbackStored(BaseModel):
    """The feedback as stored; the execution's user_rating and user_accepted now follow it."""

    feedback_id: UUID
    task_id: UUID
    feedback_type: str
    rating: int
    timestamp: datetime
