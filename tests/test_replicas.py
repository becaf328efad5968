"""Read replicas on real servers: a primary and a ``pg_basebackup -R`` streaming replica
(one pair for the module), proving where reads and writes go, failover and lag."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from orb_learning import LearningDatabase, SentenceTransformerEmbedder, migrations
from orb_learning._replicas import APPLICATION_NAME
from orb_learning.config import Settings
from orb_learning.errors import ArgumentError, ConfigurationError
from orb_learning.sample import generate
from tests.replica_support import Pair


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    servers = Pair().start()
    asyncio.run(migrated(servers))
    yield servers
    servers.close()


@pytest_asyncio.fixture(scope="module")
async def db(pair: Pair, embedder: SentenceTransformerEmbedder) -> AsyncIterator[LearningDatabase]:
    database = LearningDatabase(pair.primary.url, read_dsns=[pair.replica.url], embedder=embedder)
    await database.initialize()
    await database.store_executions(generate(40, seed=3))
    await database.refresh_views()  # on the primary: a replica would refuse REFRESH
    await caught_up(database)
    yield database
    await database.close()


async def migrated(servers: Pair) -> None:
    """Migrate the primary, and wait for the replica to replay it (its type ``vector``)."""
    await migrations.upgrade(servers.primary.url)
    replica = await asyncpg.connect(servers.replica.url)
    try:
        for _ in range(100):
            if await replica.fetchval("SELECT to_regtype('public.vector') IS NOT NULL"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the replica never replayed the migrations")
    finally:
        await replica.close()


async def caught_up(db: LearningDatabase) -> None:
    for _ in range(100):
        if (await db.replica_status())[0]["state"] == "streaming":
            rows = await db.get_solution_patterns(min_usage=0)
            if rows:
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the replica never caught up")


async def readers(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        return int(await connection.fetchval(query, APPLICATION_NAME))
    finally:
        await connection.close()


async def test_reads_reach_the_replica_and_writes_never_do(
    db: LearningDatabase, pair: Pair
) -> None:
    found = await db.find_similar_executions("fix the failing login test", threshold=0.0)
    assert found
    assert await db.get_tier_performance()
    assert await readers(pair.replica.url) >= 1
    assert await readers(pair.primary.url) == 0
    await db.store_executions(generate(3, seed=4))  # the replica is read-only: primary
    status = await db.replica_status()
    assert status[0]["state"] == "streaming" and status[0]["lag_seconds"] is not None
    assert status[0]["senders"][0]["state"] == "streaming"  # the primary's view


async def test_consistency_is_checked(db: LearningDatabase) -> None:
    with pytest.raises(ArgumentError, match="consistency"):
        await db.get_pool_performance(consistency="eventual")  # type: ignore[arg-type]
    assert await db.get_tier_performance(consistency="primary")


async def test_a_lagging_replica_is_skipped_until_it_catches_up(
    pair: Pair, embedder: SentenceTransformerEmbedder
) -> None:
    replica = await asyncpg.connect(pair.replica.url)
    database = LearningDatabase(
        pair.primary.url, read_dsns=[pair.replica.url], embedder=embedder, max_replica_lag=0.2
    )
    await database.initialize()
    try:
        await replica.execute("SELECT pg_wal_replay_pause()")
        await database.store_executions(generate(2, seed=5))
        await asyncio.sleep(0.6)
        status = (await database.replica_status())[0]
        assert status["state"] == "lagging" and status["lag_seconds"] > 0.2
        assert await database.get_tier_performance()  # on the primary meanwhile
        await replica.execute("SELECT pg_wal_replay_resume()")
        for _ in range(50):
            if (await database.replica_status())[0]["state"] == "streaming":
                break
            await asyncio.sleep(0.1)
        assert (await database.replica_status())[0]["state"] == "streaming"
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()
        await database.close()


async def test_reads_fail_over_to_the_primary_logged_once(
    db: LearningDatabase, pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    pair.replica.stop()
    try:
        await asyncio.sleep(1.1)  # past the check interval
        with caplog.at_level(logging.WARNING, logger="orb_learning"):
            for _ in range(3):
                assert await db.get_tier_performance()
                assert await db.find_similar_executions("fix the login test", threshold=0.0)
        fallbacks = [r for r in caplog.records if "reads go to the primary" in r.message]
        assert len(fallbacks) == 1
        assert (await db.replica_status())[0]["state"] == "down"
    finally:
        pair.replica.start()
    await caught_up(db)


async def test_reads_go_on_when_the_primary_stops(db: LearningDatabase, pair: Pair) -> None:
    await caught_up(db)
    await readers(pair.replica.url)
    pair.primary.stop()
    try:
        assert await db.find_similar_executions("fix the failing login test", threshold=0.0)
        assert await db.get_solution_patterns(min_usage=0)
        assert (await db.replica_status())[0]["senders"] == []  # the primary is away
    finally:
        pair.primary.start()


def test_the_environment_names_the_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    urls = "postgresql://a@r1/x, postgresql://a@r2/x"
    monkeypatch.setenv("ORB_LEARNING_READ_DATABASE_URLS", urls)
    monkeypatch.setenv("ORB_LEARNING_MAX_REPLICA_LAG", "2.5")
    settings = Settings.resolve("postgresql://a@p/x")
    assert settings.read_dsns == ("postgresql://a@r1/x", "postgresql://a@r2/x")
    assert settings.max_replica_lag == 2.5
    assert Settings.resolve("postgresql://a@p/x", max_replica_lag=9.0).max_replica_lag == 9.0
    monkeypatch.setenv("ORB_LEARNING_MAX_REPLICA_LAG", "soon")
    with pytest.raises(ConfigurationError, match="MAX_REPLICA_LAG"):
        Settings.resolve("postgresql://a@p/x")
    assert Settings().read_dsns == ()  # default off
