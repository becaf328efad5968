"""A full disk under the spool: ``shutdown(timeout)`` returns by its timeout, every file
holds whole lines only, what cannot be kept is counted and said at ERROR, and what the disk
cannot take is stored when the database answers (before: with a 256 KiB spool and the
database down, shutdown(timeout=120) hung for 390 s, a spool line was cut in half, and the
losses were not counted).

The disk: a 256 KiB tmpfs mounted for the test (this needs root, as the test machines
have). Where mounting is refused, the capture runs in a subprocess whose RLIMIT_FSIZE is
256 KiB instead (writes then fail with EFBIG per file, not for the whole directory: the
journal rotates past it, so there is less to lose and the loss checks are skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orb_learning import LearningDatabase, TelemetryCapture
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, sender

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "postgresql://u@127.0.0.1:1/x"  # nothing listens on port 1
SIZE = 256 << 10
TASKS = 3000
SEED = 41


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory on a 256 KiB file system, and how: "tmpfs" or "rlimit"."""
    directory = tmp_path / "tiny"
    directory.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={SIZE // 1024}k", "tmpfs", str(directory)]
    mounted = subprocess.run(command, capture_output=True).returncode == 0
    try:
        yield directory, "tmpfs" if mounted else "rlimit"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], check=False)


class SlowDatabase(LearningDatabase):
    """The real store, each batch write ``delay`` seconds slower (a busy server)."""

    def __init__(self, dsn: str, delay: float) -> None:
        super().__init__(dsn, embedder=HashEmbedder())
        self.delay = delay

    async def store_executions(self, records: Any, **options: Any) -> int:
        await asyncio.sleep(self.delay)
        return await super().store_executions(records, **options)


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def fill(directory: Path, leave: int) -> None:
    """Take all the space but ``leave`` bytes (a ballast file)."""
    fd = os.open(directory / "ballast", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096) == 4096:
                pass
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)


async def scenario(
    directory: str, dsn: str, *, queue_size: int, timeout: float, ballast: bool, delay: float
) -> dict[str, Any]:
    """Capture TASKS tasks with the spool in ``directory``, then shut down."""
    errors = Errors()
    logging.getLogger("orb_learning").addHandler(errors)
    try:
        if ballast:
            fill(Path(directory), leave=8192)
        db = SlowDatabase(dsn, delay)
        capture = TelemetryCapture(
            None,
            db,
            batch_size=100,
            batch_timeout=0.05,
            queue_size=queue_size,
            max_backoff=0.5,
            spool_path=Path(directory) / "spool.jsonl",
        )
        await capture.initialize()
        send = sender(capture)
        for n, task in enumerate(make_stream(TASKS, seed=SEED)):
            for event in task.events:
                await send(*event)
            if n % 50 == 0:
                await asyncio.sleep(0)
        stats = capture.stats()
        started = time.monotonic()
        report = await capture.shutdown(timeout=timeout)
        elapsed = time.monotonic() - started
        await db.close()
    finally:
        logging.getLogger("orb_learning").removeHandler(errors)
    return {
        "report": dataclasses.asdict(report),
        "stats": stats,
        "elapsed": elapsed,
        "errors": errors.messages,
    }


async def run(disk: tuple[Path, str], dsn: str, **options: Any) -> dict[str, Any]:
    directory, how = disk
    if how == "tmpfs":
        return await scenario(str(directory), dsn, **options)
    code = (
        "import asyncio, json, sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.test_telemetry_full_disk import scenario;"
        "options = json.loads(sys.argv[4]);"
        "print(json.dumps(asyncio.run(scenario(sys.argv[2], sys.argv[3], **options))))"
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (SIZE, SIZE))

    args = [sys.executable, "-c", code, str(ROOT), str(directory), dsn, json.dumps(options)]
    result = await asyncio.to_thread(
        subprocess.run, args, capture_output=True, text=True, preexec_fn=limit, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


def whole_lines_only(directory: Path) -> int:
    """Every spool and journal file ends with a newline and each of its lines is JSON."""
    lines = 0
    for path in directory.glob("*.jsonl*"):
        content = path.read_bytes()
        assert not content or content.endswith(b"\n"), path
        for line in content.splitlines():
            json.loads(line)
            lines += 1
    return lines


def spooled_ids(directory: Path) -> set[str]:
    ids = set()
    for path in directory.glob("spool*.jsonl"):
        if ".journal." not in path.name and ".refused." not in path.name:
            for line in path.read_text().splitlines():
                ids.add(json.loads(line)["record"]["task_id"])
    return ids


async def test_a_full_disk_and_no_database_shutdown_returns_in_time_and_counts_the_loss(
    tiny_disk: tuple[Path, str], database_url: str
) -> None:
    outcome = await run(tiny_disk, UNREACHABLE, queue_size=500, timeout=5.0, ballast=False, delay=0)
    report, stats, errors = outcome["report"], outcome["stats"], outcome["errors"]
    assert outcome["elapsed"] < 5.0 + 3.0, outcome  # by its timeout (with a margin)
    directory, how = tiny_disk
    assert whole_lines_only(directory) > 0
    assert report["records_stored"] == report["dead_letters_stored"] == 0, report
    assert report["in_journal"] + report["spooled"] + report["lost"] == TASKS, report
    assert report["halves_in_journal"] == report["halves_spooled"] == 0, report
    assert len(spooled_ids(directory)) == report["spooled"]
    if how == "tmpfs":  # the whole file system is full: something must be lost
        assert report["lost"] > 0 and stats["records_lost"] > 0, report
        assert stats["events_not_journaled"] > 0 and stats["journal_error"], stats
        assert any("LOST" in m and str(report["lost"]) in m for m in errors), errors
        assert any("cannot write the telemetry journal" in m for m in errors), errors

    # The database back: exactly what was kept is stored, once.
    kept = report["in_journal"] + report["spooled"]
    tasks = {str(t.task_id): t for t in make_stream(TASKS, seed=SEED)}

    async def replay() -> list[Any]:
        async with LearningDatabase(database_url, embedder=HashEmbedder()) as db:
            capture = TelemetryCapture(
                None, db, batch_timeout=0.05, spool_path=directory / "spool.jsonl"
            )
            await capture.initialize()
            assert await capture.flush(timeout=60)
            again = await capture.shutdown()
            assert again.complete and again.records_stored == kept, again
            # The task whose events the full disk cut in two: its journaled half waits.
            assert again.halves_in_journal <= 2, again
            async with db.connection() as connection:
                return list(await connection.fetch("SELECT * FROM executions"))

    rows = await replay()
    assert len(rows) == kept
    check_rows(rows, [tasks[str(row["task_id"])] for row in rows])
    assert not [p for p in directory.glob("*.jsonl") if ".journal." not in p.name]


async def test_a_full_disk_with_the_database_up_stores_everything(
    tiny_disk: tuple[Path, str], database_url: str
) -> None:
    """The journal and the spool cannot be written at all (a ballast file fills the disk):
    the overflow stays in memory and the writer stores it, in order; nothing is lost."""
    outcome = await run(
        tiny_disk, database_url, queue_size=2000, timeout=60.0, ballast=True, delay=0
    )
    report, stats = outcome["report"], outcome["stats"]
    assert report["records_stored"] == TASKS and report["lost"] == 0, report
    assert report["in_journal"] == report["spooled"] == 0, report
    assert stats["events_not_journaled"] > 0, stats
    whole_lines_only(tiny_disk[0])
    rows = await fetch(database_url, "SELECT * FROM executions")
    check_rows(rows, make_stream(TASKS, seed=SEED))


async def test_what_the_disk_cannot_take_at_shutdown_becomes_dead_letters(
    tiny_disk: tuple[Path, str], database_url: str
) -> None:
    """A slow database and a full disk: what the writer has not stored by the shutdown's
    timeout can go neither to the journal nor to the spool; it is stored as dead letters
    (no model needed), with its record, instead of being lost."""
    outcome = await run(
        tiny_disk, database_url, queue_size=2000, timeout=4.0, ballast=True, delay=0.3
    )
    report = outcome["report"]
    assert outcome["elapsed"] < 4.0 + 3.0, outcome
    assert report["timed_out"] or report["dead_lettered_at_shutdown"] > 0, report
    assert report["dead_lettered_at_shutdown"] > 0 and report["lost"] == 0, report
    total = report["records_stored"] + report["dead_lettered_at_shutdown"]
    assert total + report["in_journal"] + report["spooled"] == TASKS, report
    whole_lines_only(tiny_disk[0])
    rows = await fetch(database_url, "SELECT task_id FROM executions")
    letters = await fetch(database_url, "SELECT * FROM telemetry_dead_letters")
    assert len(letters) == report["dead_lettered_at_shutdown"]
    assert all("the spool could not take it" in letter["reason"] for letter in letters)
    record = letters[0]["events"][0]["data"]
    assert record["task_id"] == str(letters[0]["task_id"]) and record["task_description"]
    accounted = {r["task_id"] for r in rows} | {r["task_id"] for r in letters}
    assert len(accounted) >= TASKS - report["in_journal"] - report["spooled"]


async def fetch(url: str, query: str) -> list[Any]:
    async with (
        LearningDatabase(url, embedder=HashEmbedder()) as db,
        db.connection() as connection,
    ):
        return list(await connection.fetch(query))
