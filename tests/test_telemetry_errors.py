"""Errors no retry fixes, against the real server: a schema not migrated, a role without
the privilege to write. Nothing is dead-lettered or dropped for them; the error is logged at
ERROR once and shown in ``stats()``; the capture checks again at ``recheck_interval`` (not
at the short backoff, as ``connect()`` did forever on any error) and stores everything once
the operator has fixed it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from orb_learning import LearningDatabase, TelemetryCapture, migrations
from orb_learning._codecs import init_connection
from orb_learning.roles import grant_reader, grant_writer
from orb_learning.testing import HashEmbedder, make_stream
from tests.telemetry_support import check_rows, sender, wait_until


class CountingDatabase(LearningDatabase):
    """The real store; it counts the attempts to open it."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn, embedder=HashEmbedder())
        self.attempts = 0

    async def initialize(self) -> None:
        self.attempts += 1
        await super().initialize()


async def test_a_schema_not_migrated_waits_for_the_migration_and_drops_nothing(
    empty_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = CountingDatabase(empty_database_url)
    capture = TelemetryCapture(
        None,
        db,
        batch_timeout=0.05,
        max_backoff=0.05,  # a transient error would be retried ~20 times a second
        recheck_interval=1.0,
        spool_path=tmp_path / "spool.jsonl",
    )
    tasks = make_stream(20, seed=51)
    with caplog.at_level(logging.ERROR, logger="orb_learning.telemetry"):
        await capture.initialize()
        for task in tasks:
            for event in task.events:
                await sender(capture)(*event)
        await asyncio.sleep(2.5)
        stats = capture.stats()
    assert 2 <= db.attempts <= 4, db.attempts  # 1 per recheck_interval, not ~50 (backoff)
    assert "SchemaNotReadyError" in stats["database_error"], stats
    assert "not migrated" in stats["database_error"]
    refused = [r for r in caplog.records if "cannot open its database" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR  # once, not per attempt
    assert stats["records_queued"] == 20 and stats["dead_letters"] == 0, stats

    await migrations.upgrade(empty_database_url)  # the operator's fix
    await wait_until(lambda: capture.records_written == 20, 30, "the records, once migrated")
    assert capture.stats()["database_error"] is None
    report = await capture.shutdown()
    await db.close()
    assert report.complete and report.records_stored == 20, report
    async with (
        LearningDatabase(empty_database_url, embedder=HashEmbedder()) as check,
        check.connection() as connection,
    ):
        check_rows(await connection.fetch("SELECT * FROM executions"), tasks)
        assert await connection.fetchval("SELECT count(*) FROM telemetry_dead_letters") == 0


@pytest.fixture
async def role(database_url: str) -> AsyncIterator[str]:
    name = f"orb_test_telemetry_{uuid.uuid4().hex[:10]}"
    yield name
    connection = await asyncpg.connect(database_url)
    try:
        if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
            await connection.execute(f'DROP OWNED BY "{name}"')
            await connection.execute(f'DROP ROLE "{name}"')
    finally:
        await connection.close()


def as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_a_missing_privilege_blocks_the_writes_until_granted_and_drops_nothing(
    database_url: str, role: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await asyncpg.connect(database_url)
    await init_connection(admin)  # the library's codecs (jsonb), for reading the rows
    try:
        await grant_reader(admin, role, password="pw")  # may read, may not write
        tasks = make_stream(30, seed=52)
        async with LearningDatabase(
            as_role(database_url, role, "pw"), embedder=HashEmbedder()
        ) as db:
            capture = TelemetryCapture(
                None,
                db,
                batch_size=10,
                batch_timeout=0.05,
                max_backoff=0.05,
                recheck_interval=0.5,
                spool_path=tmp_path / "spool.jsonl",
            )
            await capture.initialize()
            with caplog.at_level(logging.ERROR, logger="orb_learning.telemetry"):
                for task in tasks:
                    for event in task.events:
                        await sender(capture)(*event)
                await wait_until(
                    lambda: capture.stats()["database_error"] is not None, 10, "the refusal"
                )
                stats = capture.stats()
            assert "InsufficientPrivilegeError" in stats["database_error"], stats
            assert stats["dead_letters"] == 0 and stats["records_written"] == 0, stats
            refusals = [r for r in caplog.records if "no retry fixes this" in r.getMessage()]
            assert len(refusals) == 1, [r.getMessage() for r in refusals]

            await grant_writer(admin, role)  # the operator's fix
            await wait_until(lambda: capture.records_written == 30, 30, "the records, once granted")
            report = await capture.shutdown()
        assert report.complete and report.records_stored == 30 and report.in_journal == 0, report
        check_rows(await admin.fetch("SELECT * FROM executions"), tasks)
        assert await admin.fetchval("SELECT count(*) FROM telemetry_dead_letters") == 0
    finally:
        await admin.close()
