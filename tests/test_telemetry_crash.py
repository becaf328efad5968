"""A process crash (``os._exit(9)``, SIGKILL) at several points of a stream: the next
start on the same spool stores every task captured, exactly once, with the feedback given,
through the journal of captured events (before it, what memory held was lost: with the
database down, 2,401 tasks and queue_size=200 gave 2,301 rows)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orb_learning import LearningDatabase, TelemetryCapture
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, sender

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "postgresql://u@127.0.0.1:1/x"  # nothing listens on port 1
SEED = 31

PRODUCER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    sys.path.insert(0, sys.argv[1])
    from orb_learning import LearningDatabase, TelemetryCapture
    from orb_learning.testing import HashEmbedder, make_stream
    from tests.telemetry_support import sender

    async def main(spool, dsn, mode, count, queue_size, durability):
        db = LearningDatabase(dsn, embedder=HashEmbedder())
        capture = TelemetryCapture(
            None, db, batch_size=20, batch_timeout=0.05, queue_size=queue_size,
            spool_path=spool, durability=durability, fsync_interval=0.05,
        )
        await capture.initialize()
        send = sender(capture)
        tasks = make_stream(count, seed=SEED)
        if mode == "halves":  # complete tasks, some rated, and then halves of others
            for task in tasks[:200]:
                for event in task.events:
                    await send(*event)
            for n, task in enumerate(tasks[:100]):
                await capture.capture_feedback({"task_id": task.task_id, "rating": n % 5 + 1})
            await capture.flush(timeout=30)  # some feedback stored before the crash
            for task in tasks[200:250]:
                await send(*task.events[0])  # the routing decision only
            for task in tasks[250:300]:
                for event in task.events[1:]:  # the pool's start and result only
                    await send(*event)
        else:
            for n, task in enumerate(tasks):
                for event in task.events:
                    await send(*event)
                if n % 20 == 0:
                    await asyncio.sleep(0)  # the writer and the spooler run meanwhile
                if n % 100 == 99:
                    print(f"captured {n + 1}", flush=True)
            for _ in range(3000 if mode == "stream-written" else 0):
                if capture.stats()["records_written"]:  # a busy machine: the first batch
                    break                               # may not be written yet
                await asyncio.sleep(0.01)
        print(json.dumps(capture.stats()), flush=True)
        os._exit(9)  # a crash right after the last capture call: no shutdown, no flush

    SEED = int(sys.argv[8])
    asyncio.run(main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]),
                     int(sys.argv[6]), sys.argv[7]))
    """
)


def producer(
    tmp_path: Path,
    spool: Path,
    dsn: str,
    mode: str,
    count: int,
    *,
    queue_size: int = 50,
    durability: str = "write",
) -> list[str]:
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    args = [sys.executable, str(script), str(ROOT), str(spool), dsn, mode, str(count)]
    args += [str(queue_size), durability, str(SEED)]
    return args


def crash(args: list[str], cwd: Path) -> dict[str, Any]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 9, result.stderr[-3000:]
    stats: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return stats


async def restart(
    database: LearningDatabase, spool: Path, *rest: tuple[str, dict[str, Any]]
) -> dict[str, Any]:
    """A new capture on the spool: what the journal and the spool hold, plus ``rest``."""
    capture = TelemetryCapture(None, database, batch_timeout=0.05, spool_path=spool)
    await capture.initialize()
    for event in rest:
        await sender(capture)(*event)
    assert await capture.flush(timeout=60), capture.stats()
    stats = capture.stats()
    report = await capture.shutdown()
    assert report.complete and report.in_journal == report.spooled == 0, report
    assert not list(spool.parent.glob("*.jsonl")), list(spool.parent.iterdir())
    return stats


async def stored(database: LearningDatabase) -> tuple[list[Any], list[Any], int]:
    async with database.connection() as connection:
        rows = await connection.fetch("SELECT * FROM executions")
        feedback = await connection.fetch("SELECT * FROM feedback")
        letters = await connection.fetchval("SELECT count(*) FROM telemetry_dead_letters")
    return rows, feedback, letters


@pytest.mark.parametrize(
    ("dsn", "count", "queue_size", "durability"),
    [
        pytest.param(UNREACHABLE, 2401, 200, "write", id="database-down"),
        pytest.param(UNREACHABLE, 600, 50, "fsync", id="database-down-fsync"),
        pytest.param(None, 2000, 50, "write", id="mid-batch"),
    ],
)
async def test_a_crash_loses_no_captured_task(
    database_url: str,
    tmp_path: Path,
    dsn: str | None,
    count: int,
    queue_size: int,
    durability: str,
) -> None:
    spool = tmp_path / "spool" / "spool.jsonl"
    url = dsn or database_url
    mode = "stream" if dsn else "stream-written"  # mid-batch: crash once a batch is written
    args = producer(tmp_path, spool, url, mode, count, queue_size=queue_size, durability=durability)
    before = crash(args, tmp_path)
    tasks = make_stream(count, seed=SEED)
    if dsn is None:
        assert 0 < before["records_written"] < count, before  # the crash came mid-stream
    else:
        assert before["records_written"] == 0 and before["records_queued"] > 0, before
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        after = await restart(db, spool)
        rows, _, letters = await stored(db)
    check_rows(rows, tasks)
    assert letters == 0 and after["dead_letters"] == after["events_rejected"] == 0, after


async def test_halves_and_feedback_survive_a_crash_and_meet_after_it(
    database_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool" / "spool.jsonl"
    before = crash(producer(tmp_path, spool, database_url, "halves", 300), tmp_path)
    assert before["routing_decisions_waiting"] == before["outcomes_waiting"] == 50, before
    backup = tmp_path / "backup"
    shutil.copytree(spool.parent, backup)
    tasks = make_stream(300, seed=SEED)
    rest = [task.events[1] for task in tasks[200:250]] + [task.events[2] for task in tasks[200:250]]
    rest += [task.events[0] for task in tasks[250:300]]
    for n, task in enumerate(tasks[:100]):
        task.expected.update(user_rating=n % 5 + 1, user_accepted=n % 5 + 1 >= 3)
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        for round_ in range(2):  # again from the copy: replaying twice stores nothing twice
            if round_:
                shutil.rmtree(spool.parent)
                shutil.copytree(backup, spool.parent)
            after = await restart(db, spool, *rest)
            rows, feedback, letters = await stored(db)
            check_rows(rows, tasks)
            assert sorted(f["task_id"] for f in feedback) == sorted(t.task_id for t in tasks[:100])
            assert letters == 0 and after["dead_letters"] == 0, after
            assert after["routing_decisions_waiting"] == after["outcomes_waiting"] == 0, after


async def test_a_sigkill_at_any_moment_keeps_every_task_captured_before_it(
    database_url: str, tmp_path: Path
) -> None:
    """Killed from outside while it captures: each task whose events were all captured
    before the last progress line read is stored, once, and nothing else is invented."""
    spool = tmp_path / "spool" / "spool.jsonl"
    args = producer(tmp_path, spool, database_url, "stream", 4000, queue_size=30)
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    assert child.stdout is not None
    captured = 0
    for line in child.stdout:
        if line.startswith("captured"):
            captured = int(line.split()[1])
            if captured >= 1500:
                os.kill(child.pid, signal.SIGKILL)
                break
    assert child.wait(timeout=60) == -signal.SIGKILL and captured >= 1500
    tasks = make_stream(4000, seed=SEED)
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        capture = TelemetryCapture(None, db, batch_timeout=0.05, spool_path=spool)
        await capture.initialize()
        assert await capture.flush(timeout=60)
        waiting = capture.routing_decisions_waiting + capture.outcomes_waiting
        await capture.shutdown()
        rows, _, letters = await stored(db)
    by_id = {task.task_id: task for task in tasks}
    ids = {row["task_id"] for row in rows}
    assert ids >= {task.task_id for task in tasks[:captured]}
    assert ids <= set(by_id) and letters == 0
    check_rows(rows, [by_id[i] for i in ids])
    assert waiting <= 1  # at most the task whose events the kill cut in two
