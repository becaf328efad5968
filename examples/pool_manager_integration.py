"""The pool manager, with pool executions captured, and the whole flow runnable:
router -> pool -> telemetry -> PostgreSQL, over Mahavishnu's bus through the adapter.

    python examples/pool_manager_integration.py                # embedded server, ./data/learning
    python examples/pool_manager_integration.py --dsn postgresql://user@host/db

The pool manager uses THE SAME ``task_id`` as the router (``task["task_id"]``), never a
fresh ``uuid4()`` as the first version's quick start did, and publishes the pool's result
``{pool_id, worker_id, status, output, error, duration}`` as it is, plus that task_id:
"completed" means success, ``duration`` is the duration, ``error`` the error message.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the examples' own modules

from mahavishnu_bus import MessageBus  # the orchestrator's bus (its stand-in here)
from mahavishnu_bus_adapter import MahavishnuBusAdapter
from model_router_integration import TieredModelRouter

from orb_learning import LearningDatabase, TelemetryCapture
from orb_learning.telemetry import (
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    MessageBus as TelemetryBus,
)


class MahavishnuPool:
    """A worker pool; ``execute_task`` returns the real pool's result shape."""

    def __init__(self, pool_id: str, pool_type: str = "mahavishnu") -> None:
        self.pool_id, self.pool_type = pool_id, pool_type
        self._random = random.Random(pool_id)

    async def execute_task(self, task: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        await asyncio.sleep(0.01)  # the work
        failed = self._random.random() < 0.2
        return {
            "pool_id": self.pool_id,
            "worker_id": f"{self.pool_id}-worker-{self._random.randrange(3)}",
            "status": "failed" if failed else "completed",
            "output": "" if failed else f"done: {task['description']}",
            "error": "worker timed out after 300 s" if failed else None,
            "duration": time.monotonic() - started,
        }


class PoolManager:
    def __init__(
        self, pools: dict[str, MahavishnuPool], bus: MessageBus, telemetry_bus: TelemetryBus
    ) -> None:
        self.pools, self.bus, self.telemetry_bus = pools, bus, telemetry_bus

    async def execute_on_pool(self, pool_id: str, task: dict[str, Any]) -> dict[str, Any]:
        pool = self.pools[pool_id]
        task_id = task["task_id"]  # the router's id: the halves meet on it
        await self.telemetry_bus.publish(
            POOL_EXECUTION_START,
            {"pool_id": pool_id, "task_id": task_id, "timestamp": datetime.now(UTC)},
        )
        try:
            result = await pool.execute_task(task)
        except Exception as exc:
            result = {"pool_id": pool_id, "status": "failed", "error": str(exc)}
            raise
        finally:
            await self.telemetry_bus.publish(
                POOL_EXECUTION_COMPLETE,
                {**result, "task_id": task_id, "pool_type": pool.pool_type},
            )
        # The orchestrator's own message, unchanged (it has no task_id: telemetry does
        # not rely on it).
        await self.bus.publish(
            {
                "type": "task_completed",
                "source_pool_id": pool_id,
                "payload": {"pool_id": pool_id, "result": result},
            }
        )
        return result


TASKS = [
    ("refactor", "Optimize database queries in the session store", ["store.py", "db.py"]),
    ("test", "Add property tests for the routing table", ["router.py"]),
    ("code_review", "Review the pool manager's retry logic", ["manager.py", "retry.py"]),
    ("refactor", "Split the message bus into transport and dispatch", ["bus.py"]),
    ("test", "Cover the embedded server's restart path", []),
]


async def run_flow(
    database: LearningDatabase, *, rounds: int = 2, spool_path: str | Path | None = None
) -> list[str]:
    """Route and execute every task ``rounds`` times; return the task ids."""
    bus = MessageBus()
    adapter = MahavishnuBusAdapter(bus)
    telemetry = TelemetryCapture(adapter, database, batch_timeout=0.5, spool_path=spool_path)
    await telemetry.initialize()
    router = TieredModelRouter(adapter)
    manager = PoolManager({p: MahavishnuPool(p) for p in ("pool-a", "pool-b")}, bus, adapter)
    task_ids: list[str] = []
    for n in range(rounds):
        for i, (task_type, description, files) in enumerate(TASKS):
            task: dict[str, Any] = {
                "type": task_type,
                "description": description,
                "repo": "mahavishnu",
                "files": files,
                "estimated_tokens": 1500 * (i + 1) + 4000 * n,
            }
            await router.route_task(task)
            await manager.execute_on_pool(("pool-a", "pool-b")[i % 2], task)
            task_ids.append(task["task_id"])
    await telemetry.shutdown()  # drains the bus, writes every record
    stats = telemetry.stats()
    assert stats["routing_decisions_waiting"] == stats["outcomes_waiting"] == 0, stats
    return task_ids


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn", help="PostgreSQL URL (default: $ORB_LEARNING_DATABASE_URL, else embedded)"
    )
    args = parser.parse_args()
    async with LearningDatabase(args.dsn) as db:
        task_ids = await run_flow(db)
        async with db.connection() as connection:
            rows = await connection.fetch(
                "SELECT task_id, model_tier, pool_type, success, duration_seconds, "
                "metadata->>'worker_id' AS worker FROM executions "
                "WHERE task_id = ANY($1::uuid[]) ORDER BY timestamp",
                task_ids,
            )
    for row in rows:
        outcome = "ok    " if row["success"] else "failed"
        print(
            f"{row['task_id']}  {row['model_tier']:<6} {row['pool_type']:<10} {outcome} "
            f"{row['duration_seconds']:.3f}s  {row['worker']}"
        )
    print(f"{len(rows)} of {len(task_ids)} tasks stored: routing and outcome met for each")
    assert len(rows) == len(task_ids)


if __name__ == "__main__":
    asyncio.run(main())
