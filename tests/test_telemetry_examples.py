"""The examples' flow (router -> pool -> telemetry over Mahavishnu's bus through the
adapter) against the test database: the halves really meet, one row per task."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orb_learning import LearningDatabase
from orb_learning.testing import HashEmbedder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def examples() -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        names = ("mahavishnu_bus", "mahavishnu_bus_adapter", "pool_manager_integration")
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(EXAMPLES))


async def test_routing_and_pool_results_meet_in_one_row_per_task(
    examples: dict[str, ModuleType], database_url: str, tmp_path: Path
) -> None:
    flow = examples["pool_manager_integration"]
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        task_ids = await flow.run_flow(db, rounds=3, spool_path=tmp_path / "spool.jsonl")
        async with db.connection() as connection:
            rows = await connection.fetch("SELECT * FROM executions ORDER BY timestamp")
            letters = await connection.fetchval("SELECT count(*) FROM telemetry_dead_letters")
    assert len(task_ids) == len(set(task_ids)) == 15
    assert sorted(str(row["task_id"]) for row in rows) == sorted(task_ids)
    assert letters == 0
    for row, (task_type, description, files) in zip(rows, flow.TASKS * 3, strict=True):
        assert (row["task_type"], row["task_description"]) == (task_type, description)
        assert row["file_count"] == len(files) and row["repo"] == "mahavishnu"
        assert row["model_tier"] in ("small", "medium", "large")
        assert row["pool_type"] == "mahavishnu"
        assert row["success"] == (row["error_message"] is None)
        assert row["error_type"] == (None if row["success"] else "timeout")
        assert set(row["metadata"]) == {"model", "routing_reason", "pool_id", "worker_id"}
        assert row["cost_estimate"] > 0 and row["duration_seconds"] > 0


async def test_the_adapter_carries_events_inside_status_updates(
    examples: dict[str, ModuleType],
) -> None:
    mahavishnu = examples["mahavishnu_bus"]
    bus = mahavishnu.MessageBus()
    adapter = examples["mahavishnu_bus_adapter"].MahavishnuBusAdapter(bus)
    received: list[Any] = []
    seen_by_the_orchestrator: list[Any] = []

    async def handler(payload: dict[str, Any]) -> None:
        received.append(payload)

    async def status_listener(message: Any) -> None:
        seen_by_the_orchestrator.append(message)

    adapter.subscribe("orb_learning.routing_decision", handler)
    bus.subscribe(mahavishnu.MessageType.STATUS_UPDATE, status_listener)
    await adapter.publish("orb_learning.routing_decision", {"task_id": "t1"})
    await adapter.publish("orb_learning.feedback", {"task_id": "t2"})  # nobody listens
    await bus.publish({"type": "status_update", "payload": {"pool": "busy"}})  # not ours
    await bus.publish({"type": "routing_decision", "payload": {}})  # unknown: relabelled
    await adapter.drain()
    await asyncio.sleep(0.01)
    assert received == [{"task_id": "t1"}]
    assert [m.type for m in seen_by_the_orchestrator] == [mahavishnu.MessageType.STATUS_UPDATE] * 4
    assert (
        seen_by_the_orchestrator[0].payload["orb_learning_event"] == "orb_learning.routing_decision"
    )


def test_the_example_runs_as_a_program(database_url: str, tmp_path: Path) -> None:
    script = EXAMPLES / "pool_manager_integration.py"
    result = subprocess.run(
        [sys.executable, str(script), "--dsn", database_url],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "10 of 10 tasks stored" in result.stdout
