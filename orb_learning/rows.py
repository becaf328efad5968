"""The rows the read methods return, as ``TypedDict``s: plain dicts at run time (so the
first version's callers keep indexing them), typed for IDEs and mypy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypedDict
from uuid import UUID

__all__ = ["PoolPerformance", "SimilarExecution", "SolutionPattern", "TierPerformance",
           "ViewFreshness"]  # fmt: skip


class SimilarExecution(TypedDict):
    """A stored execution (every field of :class:`~orb_learning.ExecutionRecord`, as
    stored) and its cosine ``similarity`` to the query, -1 to 1."""

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
    similarity: float


class TierPerformance(TypedDict):
    """One model tier and task type over the window (``repo`` as asked: None for all)."""

    model_tier: str
    task_type: str
    repo: str | None
    total_executions: int
    successful_count: int
    success_rate: float
    avg_duration: float
    avg_cost: float
    avg_quality: float | None


class PoolPerformance(TypedDict):
    """One worker pool over the window (``repo`` as asked: None for all)."""

    pool_type: str
    repo: str | None
    total_tasks: int
    successful_tasks: int
    success_rate: float
    avg_duration: float
    avg_cost: float


class SolutionPattern(TypedDict):
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


class ViewFreshness(TypedDict):
    """One materialized part: its watermark (None before its first refresh), its last
    successful refresh and that refresh's age and row count."""

    view_name: str
    watermark: datetime | None
    last_refreshed_at: datetime | None
    age: timedelta | None
    rows: int | None
