"""Read replicas on real servers: a primary and a ``pg_basebackup -R`` streaming replica
(one pair for the module), proving where reads and writes go (from pg_stat_activity and
the servers' statement logs), failover and lag."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from orb_learning import LearningDatabase, SentenceTransformerEmbedder, migrations
from orb_learning._replica_senders import conninfo_value, match
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


SEARCH = "FROM executions WHERE"  # the search's two paths (the fit's SQL has a line break)


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


async def test_recommend_route_reads_on_the_replica_and_logs_on_the_primary(
    pair: Pair, embedder: SentenceTransformerEmbedder
) -> None:
    database = LearningDatabase(pair.primary.url, read_dsns=[pair.replica.url], embedder=embedder)
    await database.initialize()
    task = "fix the failing login test"
    try:
        replica_from, primary_from = pair.replica.log_size(), pair.primary.log_size()
        made = await database.recommend_route(task)
        assert not made.fallback and made.chosen is not None
        read = pair.replica.statements(replica_from, APPLICATION_NAME)
        wrote = pair.primary.statements(primary_from, "")
        assert any(SEARCH in sql for sql in read) and not any(SEARCH in sql for sql in wrote)
        assert any("unnest($1::uuid[])" in sql for sql in read)  # the model's fit
        assert any("INSERT INTO route_recommendations" in sql for sql in wrote)
        assert await readers(pair.replica.url) >= 1 and await readers(pair.primary.url) == 0
        assert await logged(pair.primary.url, made.recommendation_id) == 1

        replica_from, primary_from = pair.replica.log_size(), pair.primary.log_size()
        first = await database.recommend_route(task, days_back=None, consistency="primary")
        assert pair.replica.statements(replica_from, APPLICATION_NAME) == []
        wrote = pair.primary.statements(primary_from, "")
        assert any(SEARCH in sql for sql in wrote) and any("unnest(" in sql for sql in wrote)
        assert await logged(pair.primary.url, first.recommendation_id) == 1

        database._routes.fits.ttl = 0.0  # every model stale: the next call refits it
        replica_from, primary_from = pair.replica.log_size(), pair.primary.log_size()
        await database.recommend_route(task, log=False)
        await database.settle_route_fits()
        assert any(
            "unnest(" in sql for sql in pair.replica.statements(replica_from, APPLICATION_NAME)
        )
        assert pair.primary.statements(primary_from, "") == []  # no log, no refit there
    finally:
        await database.close()


async def logged(url: str, recommendation_id: object) -> int:
    connection = await asyncpg.connect(url)
    try:
        query = "SELECT count(*) FROM route_recommendations WHERE recommendation_id = $1"
        return int(await connection.fetchval(query, recommendation_id))
    finally:
        await connection.close()


async def test_view_freshness_reads_where_the_analytics_read(
    db: LearningDatabase, pair: Pair
) -> None:
    await caught_up(db)
    replica_from = pair.replica.log_size()
    fresh = await db.view_freshness()
    read = pair.replica.statements(replica_from, APPLICATION_NAME)
    assert fresh and any("view_watermarks" in sql for sql in read)
    primary = await db.view_freshness(consistency="primary")
    assert [r["watermark"] for r in fresh] == [r["watermark"] for r in primary]
    with pytest.raises(ArgumentError, match="consistency"):
        await db.view_freshness(consistency="any")  # type: ignore[arg-type]


async def test_replica_status_names_the_primary_s_sender_of_each_replica(
    db: LearningDatabase,
) -> None:
    (status,) = await db.replica_status()
    sender = status["sender"]
    assert sender is not None, status
    assert sender["state"] == "streaming" and sender["application_name"] == "walreceiver"
    assert sender["addr"] == "127.0.0.1" and sender["slot_name"] is None
    assert {"write_lag", "flush_lag", "replay_lag", "sync_state"} <= set(sender)


def sender_row(
    pid: int, name: str = "walreceiver", addr: str = "10.0.0.1", slot: str | None = None
) -> dict[str, object]:
    """A ``pg_stat_replication`` row as the primary's query returns it."""
    return {"pid": pid, "application_name": name, "addr": addr, "state": "streaming",
            "slot_name": slot}  # fmt: skip


def receiver_row(
    addr: str = "10.0.0.1",
    conninfo: str = "host=p fallback_application_name=walreceiver",
    slot: str | None = None,
    system: int = 7,
) -> dict[str, object]:
    """A replica's ``pg_stat_wal_receiver`` row with its identity."""
    return {"system_identifier": system, "addr": addr, "cluster_name": "",
            "status": "streaming", "slot_name": slot, "conninfo": conninfo}  # fmt: skip


def test_senders_are_matched_by_slot_then_name_then_address() -> None:
    senders = [sender_row(1, addr="10.0.0.1"), sender_row(2, addr="10.0.0.2"),
               sender_row(3, slot="r3"), sender_row(4, name="replica-4")]  # fmt: skip
    named = receiver_row(conninfo="host=p application_name='replica-4' port=5432")
    receivers = [receiver_row("10.0.0.2"), receiver_row(slot="r3"), named,
                 receiver_row(system=8), None]  # fmt: skip
    found = match(receivers, senders, 7)
    assert [None if f is None else f["addr"] for f in found[:2]] == ["10.0.0.2", "10.0.0.1"]
    assert found[1] is not None and found[1]["slot_name"] == "r3"
    assert found[2] is not None and found[2]["application_name"] == "replica-4"
    assert found[3:] == [None, None]  # another cluster's standby; a server not asked
    # Two unnamed replicas on one host: no way to tell their senders apart.
    assert match([receiver_row(), receiver_row()], [sender_row(1), sender_row(2)], 7) == [
        None,
        None,
    ]
    # One sender two replicas would claim is neither's; a hidden receiver matches nothing.
    assert match([receiver_row(), receiver_row()], [sender_row(1)], 7) == [None, None]
    hidden = {**receiver_row(), "status": None, "conninfo": None}
    assert match([hidden], [sender_row(1)], 7) == [None]
    assert conninfo_value(r"application_name='it\'s' port=5432", "application_name") == "it's"


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
        assert (await db.replica_status())[0]["sender"] is None  # the primary is away
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


def test_explicit_replica_settings_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORB_LEARNING_READ_DATABASE_URLS", "postgresql://a@r1/x")
    monkeypatch.setenv("ORB_LEARNING_MAX_REPLICA_LAG", "2.5")
    given = LearningDatabase("postgresql://a@p/x", read_dsns=[], max_replica_lag=30.0)
    assert given.settings.read_dsns == () and given.settings.max_replica_lag == 30.0
    taken = LearningDatabase("postgresql://a@p/x")
    assert taken.settings.read_dsns == ("postgresql://a@r1/x",)
    assert taken.settings.max_replica_lag == 2.5
    with pytest.raises(ConfigurationError, match="read_dsns takes a list"):
        LearningDatabase("postgresql://a@p/x", read_dsns="postgresql://a@r1/x")
