"""The tools, each a thin call of the library: the library checks the arguments (the same
one-line :class:`~orb_learning.ArgumentError` a Python caller gets), the SDK checks their
JSON types against the input schema made from these signatures, and each docstring is the
tool's description (what it is for, and its fields).

The database is opened on the first call, not at start: the server starts and lists its
tools while PostgreSQL is down, a call then fails with the transient error, and the next
call tries again. With ``read_only`` the writers are left out: ``submit_feedback``, and
``recommend_route``'s ``log`` (the read-only one never writes its recommendation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from .. import statistics
from ..errors import ArgumentError
from ..models import FeedbackRecord
from ..statistics import DatabaseStatus, ExecutionStatistics, PerformanceMetrics, TimeRange
from . import outputs
from .errors import one_line

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from ..database import LearningDatabase

READS = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
WRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
"""A writer only adds rows (a recommendation, a feedback); each call adds one more."""

Task = Annotated[str, Field(description="The task, in natural language")]
Repo = Annotated[str | None, Field(description="Only this repository's executions; null: all")]
SearchDays = Annotated[
    int | None, Field(description="Only executions of the last N days (N >= 0); null: all")
]
Fresh = Annotated[
    bool, Field(description="Count the rows stored since the views' last refresh too")
]
Range = Annotated[TimeRange, Field(description="The window, ending now")]


class Candidate(BaseModel):
    """A (model tier, worker pool) pair to consider."""

    model_tier: str
    pool_type: str


TaskType = Annotated[str | None, Field(description="The task's type")]
Complexity = Annotated[int | None, Field(description="The router's 0-100 estimate")]
Candidates = Annotated[
    list[Candidate] | None, Field(description="The pairs to choose from; null: those seen")
]
MinSuccess = Annotated[
    float | None, Field(description="Choose the cheapest option at least this likely (0-1)")
]
CostWeight = Annotated[
    float | None, Field(description="Choose the best success - weight x cost (USD), >= 0")
]
Explore = Annotated[bool, Field(description="Choose by Thompson sampling")]


class Tools:
    """The tools of one server, on one :class:`~orb_learning.LearningDatabase`."""

    def __init__(self, db: LearningDatabase, *, read_only: bool = False) -> None:
        self._db = db
        self.read_only = read_only

    def register(self, server: MCPServer[Any]) -> None:
        readers: list[Callable[..., Awaitable[BaseModel]]] = [
            self.find_similar_executions,
            self.tier_performance,
            self.pool_performance,
            self.solution_patterns,
            self.execution_statistics,
            self.performance_metrics,
            self.database_status,
        ]
        for tool in readers:
            server.add_tool(tool, annotations=READS)
        if self.read_only:
            server.add_tool(self.recommend_route_unlogged, "recommend_route", annotations=READS)
            return
        server.add_tool(self.recommend_route, annotations=WRITES)
        server.add_tool(self.submit_feedback, annotations=WRITES)

    async def _database(self) -> LearningDatabase:
        if not self._db.initialized:
            await self._db.initialize()
        return self._db

    # -- before a task -----------------------------------------------------------------

    async def find_similar_executions(
        self,
        task_description: Task,
        repo: Repo = None,
        limit: Annotated[int, Field(description="Most executions returned, >= 1")] = 10,
        days_back: SearchDays = 90,
        threshold: Annotated[float, Field(description="Least cosine similarity, -1 to 1")] = 0.7,
    ) -> outputs.SimilarExecutions:
        """Past executions most like a task (cosine similarity of the task descriptions),
        most similar first: what was tried on such tasks, and how it went. `executions`:
        each with task_id, timestamp, task_type, task_description, repo, model_tier,
        pool_type, success, duration_seconds, quality_score, cost_estimate, actual_cost,
        error_type, error_message, solution_summary, user_rating, user_accepted, metadata
        (every stored column) and similarity (-1 to 1)."""
        db = await self._database()
        rows = await db.find_similar_executions(
            task_description, repo=repo, limit=limit, days_back=days_back, threshold=threshold
        )
        return outputs.SimilarExecutions.model_validate({"executions": rows})

    async def recommend_route(
        self,
        task_description: Task,
        task_type: TaskType = None,
        repo: Repo = None,
        complexity_score: Complexity = None,
        candidates: Candidates = None,
        min_success: MinSuccess = None,
        cost_weight: CostWeight = None,
        explore: Explore = False,
        days_back: SearchDays = 90,
        log: Annotated[bool, Field(description="Write it to route_recommendations")] = True,
    ) -> outputs.RouteRecommendation:
        """Which model tier and worker pool should run a task: every candidate with its
        expected success (posterior mean and 90% interval), cost, duration and quality, from
        the task's nearest past executions. Objective: the most likely (default), the
        cheapest at least `min_success` likely, or the best success minus `cost_weight` x
        cost (not both). Fields: recommendation_id (store it with the execution), logged,
        options (ranked: model_tier, pool_type, expected_success, success_low, success_high,
        expected_cost, expected_duration, expected_quality, evidence, score), chosen, similar
        (the executions behind it), objective, explore, fallback, reason."""
        from dataclasses import asdict

        pairs = None if candidates is None else [(c.model_tier, c.pool_type) for c in candidates]
        db = await self._database()
        made = await db.recommend_route(
            task_description, task_type=task_type, repo=repo,
            complexity_score=complexity_score, candidates=pairs, min_success=min_success,
            cost_weight=cost_weight, explore=explore, days_back=days_back, log=log,
        )  # fmt: skip
        return outputs.RouteRecommendation.model_validate({**asdict(made), "logged": log})

    async def recommend_route_unlogged(
        self,
        task_description: Task,
        task_type: TaskType = None,
        repo: Repo = None,
        complexity_score: Complexity = None,
        candidates: Candidates = None,
        min_success: MinSuccess = None,
        cost_weight: CostWeight = None,
        explore: Explore = False,
        days_back: SearchDays = 90,
    ) -> outputs.RouteRecommendation:
        """Which model tier and worker pool should run a task: every candidate with its
        expected success (posterior mean and 90% interval), cost, duration and quality, from
        the task's nearest past executions. Objective: the most likely (default), the
        cheapest at least `min_success` likely, or the best success minus `cost_weight` x
        cost (not both). This server is read-only: the recommendation is not written to
        route_recommendations (logged: false). Fields: recommendation_id, logged, options
        (ranked: model_tier, pool_type, expected_success, success_low, success_high,
        expected_cost, expected_duration, expected_quality, evidence, score), chosen, similar
        (the executions behind it), objective, explore, fallback, reason."""
        return await self.recommend_route(
            task_description, task_type, repo, complexity_score, candidates, min_success,
            cost_weight, explore, days_back, log=False,
        )  # fmt: skip

    # -- analytics ---------------------------------------------------------------------

    async def tier_performance(
        self,
        repo: Repo = None,
        days_back: Annotated[int, Field(description="Whole UTC days back, >= 0")] = 30,
        fresh: Fresh = True,
    ) -> outputs.TierPerformance:
        """Per model tier and task type over the last days_back UTC days. `tiers`: each with
        model_tier, task_type, repo (as asked), total_executions, successful_count,
        success_rate (0-1), avg_duration (s), avg_cost (USD), avg_quality (0-100)."""
        db = await self._database()
        rows = await db.get_tier_performance(repo, days_back, fresh=fresh)
        return outputs.TierPerformance.model_validate({"tiers": rows})

    async def pool_performance(
        self,
        repo: Repo = None,
        days_back: Annotated[int, Field(description="Days back (whole UTC hours), >= 0")] = 7,
        fresh: Fresh = True,
    ) -> outputs.PoolPerformance:
        """Per worker pool over the last days_back days. `pools`: each with pool_type, repo
        (as asked), total_tasks, successful_tasks, success_rate (0-1), avg_duration (s),
        avg_cost (USD)."""
        db = await self._database()
        rows = await db.get_pool_performance(repo, days_back, fresh=fresh)
        return outputs.PoolPerformance.model_validate({"pools": rows})

    async def solution_patterns(
        self,
        repo: Repo = None,
        min_usage: Annotated[int, Field(description="Least uses, >= 0")] = 5,
        limit: Annotated[int, Field(description="Most patterns returned, >= 1")] = 10,
        fresh: Fresh = True,
    ) -> outputs.SolutionPatterns:
        """The solution summaries that worked best, by success rate then usage count.
        `patterns`: each with solution_summary, repo, usage_count, success_count,
        success_rate (0-1), avg_quality, repos, task_types, first_seen, last_seen,
        pattern_id."""
        db = await self._database()
        rows = await db.get_solution_patterns(repo, min_usage, limit, fresh=fresh)
        return outputs.SolutionPatterns.model_validate({"patterns": rows})

    async def execution_statistics(self, time_range: Range = "24h") -> ExecutionStatistics:
        """What ran in the window (1h, 24h, 7d, 30d or 90d) and how it went: time_range,
        since, bucket_seconds, total, by_model_tier, by_pool_type, top_repositories,
        by_task_type (lists of groups by executions) and time_series (buckets by start).
        Each holds executions, successful, success_rate, avg_duration_seconds, total_cost
        and avg_quality_score (a group also its name, a bucket its start)."""
        return await statistics.execution_statistics(await self._database(), time_range)

    async def performance_metrics(self, time_range: Range = "24h") -> PerformanceMetrics:
        """Duration and cost of the window's executions (1h, 24h, 7d, 30d or 90d):
        executions, success_rate, avg_quality_score, duration {avg, p50, p95, p99} in
        seconds, cost {total, avg, avg_savings} in USD (savings: estimate minus actual),
        memory {avg_mb, p95_mb}, and by_model_tier (each: model_tier, executions,
        success_rate, duration, cost)."""
        return await statistics.performance_metrics(await self._database(), time_range)

    async def database_status(self) -> DatabaseStatus:
        """The store's health: status (OK, WARNING or ERROR), checked_at, database {name,
        size_mb, executions_size_mb, server_version, schema_version, head_version}, tables
        (row counts), executions {total, recent_1h, daily, weekly, first_at, last_at},
        performance {daily_success_rate, avg_duration_seconds, avg_quality_score}, views
        (each part's last refresh, age_seconds, rows, last_error), warnings and errors."""
        return await statistics.database_status(await self._database())

    # -- after a task ------------------------------------------------------------------

    async def submit_feedback(
        self,
        task_id: Annotated[UUID, Field(description="The execution rated (its task_id)")],
        rating: Annotated[int, Field(description="1 (poor) to 5 (excellent)")],
        comment: Annotated[str | None, Field(description="Free text (secrets redacted)")] = None,
        feedback_type: Annotated[
            str, Field(description="rating, thumbs_up, thumbs_down, accepted, rejected...")
        ] = "rating",
    ) -> outputs.FeedbackStored:
        """Store the user's rating of an execution: the latest feedback sets its user_rating
        and user_accepted (thumbs_up/accepted: true, thumbs_down/rejected: false, else
        rating >= 3). The execution must be stored already. Fields: feedback_id, task_id,
        feedback_type, rating, timestamp."""
        try:
            record = FeedbackRecord(
                task_id=task_id, rating=rating, comment=comment, feedback_type=feedback_type
            )
        except ValidationError as exc:
            raise ArgumentError(f"invalid feedback: {one_line(exc)}") from None
        db = await self._database()
        await db.store_feedback(record)
        return outputs.FeedbackStored.model_validate(record.model_dump())
