"""The model router, with its routing decisions captured (the first version's quick start,
"Model Router Integration", made to work).

The fix that matters: the task's ``task_id`` is set once, on the task dict itself, and
every later event about the task (pool start, pool result, user feedback) uses that same
id. The first version's router captured ``task.get("task_id", str(uuid4()))``: a fresh id
that nothing else ever saw, so its routing decisions never met their outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import uuid4

from orb_learning.telemetry import ROUTING_DECISION, MessageBus


class ModelTier(Enum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


@dataclass
class ModelRouting:
    """What the router decides (first-version.md 1.6)."""

    tier: ModelTier
    model: str
    confidence: float
    complexity_score: int
    routing_reason: str
    expected_cost_savings: float
    max_tokens: int
    cost_per_1k_tokens: float


TIERS = {
    ModelTier.SMALL: ("haiku", 0.0008),
    ModelTier.MEDIUM: ("sonnet", 0.003),
    ModelTier.LARGE: ("opus", 0.015),
}


class TieredModelRouter:
    """A rule-based router: complexity from the task's size, tier from complexity."""

    def __init__(self, telemetry_bus: MessageBus) -> None:
        self.telemetry_bus = telemetry_bus

    async def route_task(self, task: dict[str, Any]) -> ModelRouting:
        task.setdefault("task_id", str(uuid4()))  # on the task: the pool sees the same id
        routing = self._analyze_and_route(task)
        await self.telemetry_bus.publish(
            ROUTING_DECISION,
            {
                "task_id": task["task_id"],
                "routing": routing,  # the object itself: its tier Enum becomes "small"...
                "timestamp": datetime.now(UTC),
                "task_data": task,
            },
        )
        return routing

    def _analyze_and_route(self, task: dict[str, Any]) -> ModelRouting:
        files = len(task.get("files", []))
        complexity = min(100, task.get("estimated_tokens", 0) // 200 + 10 * files)
        tier = (
            ModelTier.LARGE
            if complexity > 80
            else ModelTier.MEDIUM
            if complexity > 40
            else ModelTier.SMALL
        )
        model, price = TIERS[tier]
        return ModelRouting(
            tier=tier,
            model=model,
            confidence=0.9 if complexity < 20 or complexity > 90 else 0.7,
            complexity_score=complexity,
            routing_reason=f"complexity {complexity}",
            expected_cost_savings=0.0,
            max_tokens=8192,
            cost_per_1k_tokens=price,
        )
