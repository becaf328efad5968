"""The spool: a crash with the database unreachable, then a replay that lands every
record exactly once (the spooled ones, and through the journal those that were still in
memory); a shutdown that keeps the rest, unmatched halves included."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from orb_learning import LearningDatabase, TelemetryCapture
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, sender

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "postgresql://u@127.0.0.1:1/x"  # nothing listens on port 1

CRASHING_PRODUCER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    sys.path.insert(0, sys.argv[1])
    from orb_learning import LearningDatabase, TelemetryCapture
    from orb_learning.testing import HashEmbedder, make_stream
    from tests.telemetry_support import sender

    async def main(spool: str) -> None:
        db = LearningDatabase(sys.argv[3], embedder=HashEmbedder())
        capture = TelemetryCapture(
            None, db, batch_size=5, batch_timeout=0.05, queue_size=10, spool_path=spool
        )
        await capture.initialize()  # the database is down: this must not fail
        send = sender(capture)
        for task in make_stream(300, seed=5):
            for event in task.events:
                await send(*event)
        while True:  # until everything beyond memory is in the file, fsync'd
            await asyncio.sleep(0.02)
            try:
                with open(spool) as handle:
                    lines = sum(1 for _ in handle)
            except FileNotFoundError:  # not yet: the first batches are still failing
                continue
            if lines == capture.records_spooled:
                break
        print(json.dumps(capture.stats()), flush=True)
        os._exit(1)  # a crash: no shutdown, no flush

    asyncio.run(main(sys.argv[2]))
    """
)


def spooled_task_ids(directory: Path) -> list[uuid.UUID]:
    """The executions in the record spool's files (not the journal's)."""
    ids = []
    for path in sorted(directory.glob("*.jsonl")):
        if ".journal." in path.name:
            continue
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["kind"] == "execution":
                ids.append(uuid.UUID(entry["record"]["task_id"]))
    return ids


async def replay(database: LearningDatabase, spool: Path) -> dict[str, Any]:
    capture = TelemetryCapture(None, database, batch_timeout=0.05, spool_path=spool)
    await capture.initialize()
    assert await capture.flush(timeout=30), capture.stats()
    stats = capture.stats()
    await capture.shutdown()
    return stats


async def test_a_crash_with_the_database_down_loses_nothing(
    database_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool" / "spool.jsonl"
    script = tmp_path / "producer.py"
    script.write_text(CRASHING_PRODUCER)
    args = [sys.executable, str(script), str(ROOT), str(spool), UNREACHABLE]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["database_ready"] is False and stats["records_written"] == 0
    ids = spooled_task_ids(spool.parent)
    assert len(ids) == len(set(ids)) == stats["records_spooled"] > 250
    modes = {stat.S_IMODE(p.stat().st_mode) for p in spool.parent.glob("*.jsonl")}
    assert modes == {0o600}  # events as captured, before redaction: for the owner only
    backup = tmp_path / "backup"
    shutil.copytree(spool.parent, backup)

    # Before the journal, the records still in memory (the queue, the batch in flight)
    # were lost; now they are rebuilt from the journal at the next start.
    tasks = make_stream(300, seed=5)
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        for round_ in range(2):  # the second replay proves the writes idempotent
            if round_:
                shutil.rmtree(spool.parent)
                shutil.copytree(backup, spool.parent)
            replayed = await replay(db, spool)
            assert replayed["records_written"] >= len(tasks), replayed
            assert replayed["dead_letters"] == 0, replayed
            async with db.connection() as connection:
                rows = await connection.fetch("SELECT * FROM executions")
            check_rows(rows, tasks)
            assert not list(spool.parent.glob("*.jsonl"))


async def test_shutdown_keeps_records_and_unmatched_halves_for_the_next_start(
    database_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.jsonl"
    tasks = make_stream(60, seed=6)
    complete, half_done = tasks[:50], tasks[50:]
    down = TelemetryCapture(
        None, LearningDatabase(UNREACHABLE, embedder=HashEmbedder()), spool_path=spool
    )
    await down.initialize()
    for task in complete:
        for event in task.events:
            await sender(down)(*event)
    for task in half_done:  # only the routing decision before the stop
        await down.capture_routing_decision(task.events[0][1])
    assert down.routing_decisions_waiting == 10
    report = await down.shutdown(timeout=1)
    # Their events are all journaled: nothing more to write at shutdown (before the
    # journal they were spooled here, 50 records and 10 pending halves).
    assert (report.in_journal, report.halves_in_journal) == (50, 10), report
    assert report.spooled == report.lost == report.records_stored == 0, report

    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        up = TelemetryCapture(None, db, batch_timeout=0.05, spool_path=spool)
        await up.initialize()
        assert up.routing_decisions_waiting == 10  # re-fed from the spool
        for task in half_done:
            for event in task.events[1:]:
                await sender(up)(*event)
        assert await up.flush(timeout=30)
        assert up.routing_decisions_waiting == up.outcomes_waiting == 0
        await up.shutdown()
        async with db.connection() as connection:
            rows = await connection.fetch("SELECT * FROM executions")
    check_rows(rows, tasks)


async def test_while_spooling_a_record_is_never_overwritten_by_an_older_version(
    database_url: str, tmp_path: Path
) -> None:
    tasks = make_stream(300, seed=13)
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        capture = TelemetryCapture(
            None,
            db,
            batch_size=20,
            batch_timeout=0.01,
            queue_size=30,
            spool_path=tmp_path / "s.jsonl",
        )
        await capture.initialize()
        send = sender(capture)
        most_spooled = 0
        for version in (1, 2):  # every task twice: the second version must win
            for n, task in enumerate(tasks):
                routing, start, (outcome_type, outcome) = task.events
                await send(*routing)
                await send(*start)
                summary = f"version {version}"
                await send(outcome_type, {**outcome, "solution_summary": summary})
                most_spooled = max(most_spooled, capture.records_spooled)
                if n % 10 == 0:
                    await asyncio.sleep(0.001)  # let the writer and the spooler run
        assert await capture.flush(timeout=60)
        await capture.shutdown()
        async with db.connection() as connection:
            rows = await connection.fetch("SELECT task_id, solution_summary FROM executions")
    assert most_spooled > 0, "the queue should have overflowed into the spool"
    assert len(rows) == 300
    assert {row["solution_summary"] for row in rows} == {"version 2"}
    assert not list(tmp_path.glob("*.jsonl"))
