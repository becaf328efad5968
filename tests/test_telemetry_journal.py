"""The journal's own life, against the real server: settled segments are deleted, halves
that wait in an old segment are written again further on so that it can go, and what a
shutdown leaves in the journal is replayed at the next start."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orb_learning import LearningDatabase, TelemetryCapture
from orb_learning.telemetry import ROUTING_DECISION
from orb_learning.telemetry._journal import Journal
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, sender, wait_until


@pytest.fixture
async def hash_db(database_url: str) -> AsyncIterator[LearningDatabase]:
    async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
        yield db


def capture_on(db: LearningDatabase, spool: Path) -> TelemetryCapture:
    capture = TelemetryCapture(
        None, db, batch_size=50, batch_timeout=0.05, orphan_ttl=8, spool_path=spool
    )
    capture._journal.segment_bytes = 32 << 10  # small segments, so that there are several
    capture._journal.settled_rotate_bytes = 8 << 10
    return capture


def segments(spool: Path) -> list[Path]:
    return sorted(spool.parent.glob("s.journal.*.jsonl"), key=lambda p: int(p.name.split(".")[2]))


async def test_settled_segments_go_and_waiting_halves_are_carried_forward(
    hash_db: LearningDatabase, tmp_path: Path
) -> None:
    spool = tmp_path / "s.jsonl"
    capture = capture_on(hash_db, spool)
    await capture.initialize()
    send = sender(capture)
    waiting, complete = make_stream(10, seed=61), make_stream(400, seed=62)
    for task in waiting:  # their routing decisions only, in the first segment
        await send(*task.events[0])
    first = segments(spool)[0]
    for n, task in enumerate(complete):
        for event in task.events:
            await send(*event)
        if n % 20 == 0:
            await asyncio.sleep(0)  # the check behind the calls rotates the segments
    assert len(segments(spool)) >= 3
    # The journal holds events as captured (before any redaction): for its owner only.
    assert {stat.S_IMODE(p.stat().st_mode) for p in segments(spool)} == {0o600}
    assert await capture.flush(timeout=30)
    # Every segment whose events are all stored is gone, but the first one and the one
    # being written.
    await wait_until(lambda: len(segments(spool)) <= 2, 10, "the settled segments deleted")
    assert first.exists()
    # The first segment held the waiting decisions alone: they are written again later on
    # (within a sweep: orphan_ttl / 4), and the segment goes.
    await wait_until(lambda: not first.exists(), 10, "the first segment carried forward")
    stats = capture.stats()
    assert stats["journal_events"] == 10 and stats["journal_segments"] <= 2, stats
    assert stats["routing_decisions_waiting"] == 10, stats
    report = await capture.shutdown()
    assert report.halves_in_journal == 10 and report.in_journal == report.lost == 0, report

    again = capture_on(hash_db, spool)  # the carried lines are what the next start reads
    await again.initialize()
    assert again.routing_decisions_waiting == 10
    for task in waiting:
        for event in task.events[1:]:
            await sender(again)(*event)
    assert await again.flush(timeout=30)
    report = await again.shutdown()
    assert report.complete and report.halves_in_journal == 0, report
    assert not segments(spool)
    async with hash_db.connection() as connection:
        rows = await connection.fetch("SELECT * FROM executions")
        assert await connection.fetchval("SELECT count(*) FROM telemetry_dead_letters") == 0
    check_rows(rows, [*waiting, *complete])


def test_a_machine_crash_torn_last_line_is_cut_and_the_rest_replayed(tmp_path: Path) -> None:
    """What a machine crash can leave (a line written in part): cut at the next start; the
    whole lines before it are replayed, those settled (their mark written) are not."""
    journal = Journal(tmp_path, "s")
    assert journal.load() == []
    seqs = [journal.append(ROUTING_DECISION, f'{{"task_id":"t{n}"}}', 1.5 + n) for n in range(3)]
    journal.settle([seqs[0]])
    journal.write_marks()
    assert journal._fd is not None
    os.close(journal._fd)  # the process dies here, no close()
    (path,) = tmp_path.glob("s.journal.*.jsonl")
    with open(path, "ab") as handle:
        handle.write(b'{"q":4,"e":"orb_learning.rout')  # the torn tail
    again = Journal(tmp_path, "s")
    replayed = again.load()
    assert [(q, data, received) for q, _, data, received in replayed] == [
        (seqs[1], {"task_id": "t1"}, 2.5),
        (seqs[2], {"task_id": "t2"}, 3.5),
    ]
    assert path.read_bytes().endswith(b"}\n") and again.unsettled == 2
    assert again.append(ROUTING_DECISION, "{}", 9.0) == 4  # numbering goes on past them
