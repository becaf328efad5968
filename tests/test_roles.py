"""Least-privilege roles on a real server: what a reader and a writer can and cannot do.

Roles are cluster-wide: each test makes uniquely named ones and drops them afterwards.
Refusals are checked under ``SET LOCAL ROLE`` on the (superuser) test connection, and, for
the login roles, by connecting as them.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from orb_learning import (
    ConfigurationError,
    DatabaseError,
    InsufficientPrivilegeError,
    LearningDatabase,
    migrations,
    refresh,
    sample,
)
from orb_learning._dead_letters import DeadLetter
from orb_learning.embeddings import Embedder
from orb_learning.models import FeedbackRecord
from orb_learning.roles import (
    READ_TABLES,
    VIEW_NAMES,
    check_role_name,
    grant_reader,
    grant_writer,
    scram_sha_256_verifier,
)
from tests.test_store import unit_vectors

REFRESH = "orb_learning_refresh_views(interval, interval, boolean)"
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
WRITER_EXTRA = {
    "executions": {"INSERT", "UPDATE"},
    "execution_keys": {"INSERT", "UPDATE"},
    "feedback": {"INSERT"},
    "telemetry_dead_letters": {"INSERT"},
    "view_refresh_log": {"INSERT"},
    "view_watermarks": {"UPDATE"},
    "view_history_dirty": {"DELETE"},
    "route_recommendations": {"INSERT"},
    **{view: {"MAINTAIN"} for view in VIEW_NAMES},
}
PASSWORD = "s3cret pass/with:odd@chars"

NEW_EXECUTION = (
    'INSERT INTO executions (task_id, "timestamp", task_type, task_description, repo, '
    "model_tier, pool_type, routing_confidence, success, duration_seconds, cost_estimate, "
    "actual_cost) VALUES (gen_random_uuid(), now(), 't', 'd', 'r', 'small', 'p', 0.5, true, "
    "1, 0, 0)"
)
FORBIDDEN_TO_BOTH = [
    "DELETE FROM executions", "TRUNCATE executions", "DELETE FROM feedback",
    "UPDATE feedback SET rating = 1", "DELETE FROM view_refresh_log",
    "ALTER TABLE executions ADD COLUMN intruder int", "ALTER TABLE feedback DISABLE TRIGGER ALL",
    "ALTER VIEW tier_performance_mv RENAME TO intruder", "DROP VIEW pool_performance_mv",
    "ALTER MATERIALIZED VIEW tier_performance_history_mv RENAME TO intruder",
    "DROP TABLE executions", "DROP TABLE feedback",
    "DROP MATERIALIZED VIEW pool_performance_recent_mv",
    "INSERT INTO view_history_dirty (view_name, since) VALUES ('x', now())",
    "UPDATE view_history_dirty SET since = now()", "DROP TABLE view_history_dirty",
    f"DROP FUNCTION {REFRESH}", "CREATE TABLE public.intruder (x int)",
    "CREATE VIEW public.intruder AS SELECT 1", "CREATE INDEX ON executions (repo)",
    "CREATE FUNCTION public.intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE SCHEMA intruder", "COMMENT ON TABLE executions IS 'mine'",
]  # fmt: skip
FORBIDDEN_TO_READER = [
    *FORBIDDEN_TO_BOTH,
    NEW_EXECUTION,
    "UPDATE executions SET success = NOT success",
    'INSERT INTO feedback (feedback_id, task_id, "timestamp", feedback_type, rating) '
    "SELECT gen_random_uuid(), task_id, now(), 'x', 3 FROM executions",
    "INSERT INTO telemetry_dead_letters (reason, events, first_seen_at) VALUES ('x', '[]', now())",
    "INSERT INTO view_refresh_log (view_name, started_at, status) VALUES ('x', now(), 'failed')",
    "UPDATE view_watermarks SET watermark = now()",
    "DELETE FROM view_history_dirty",
    *(f"REFRESH MATERIALIZED VIEW {view}" for view in VIEW_NAMES),
    *(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}" for view in VIEW_NAMES),
    "SELECT * FROM orb_learning_refresh_views()",
    "LOCK TABLE executions IN ACCESS EXCLUSIVE MODE",
]


def as_role(url: str, role: str, password: str) -> str:
    """``url`` logging in as ``role`` (host, port and query string kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def new_role(database_url: str) -> AsyncIterator[Callable[[str], str]]:
    """Unique role names; every role made is dropped after the test."""
    names: list[str] = []

    def make(kind: str) -> str:
        names.append(f"orb_test_{kind}_{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    connection = await asyncpg.connect(database_url)
    try:
        for name in names:
            if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
                await connection.execute(f'DROP OWNED BY "{name}"')
                await connection.execute(f'DROP ROLE "{name}"')
    finally:
        await connection.close()


async def effective_privileges(connection: asyncpg.Connection, role: str) -> dict[str, set[str]]:
    """Per relation of the schema (tables, views, sequences), what ``role`` may do to it,
    through its own grants and PUBLIC's."""
    version = int(await connection.fetchval("SELECT current_setting('server_version_num')"))
    privileges = [*PRIVILEGES, *(["MAINTAIN"] if version >= 170000 else [])]
    rows = await connection.fetch(
        """
        SELECT c.relname, p.privilege
        FROM pg_class c CROSS JOIN unnest($2::text[] || ARRAY['USAGE']) AS p(privilege)
        WHERE c.relnamespace = 'public'::regnamespace
          AND CASE WHEN c.relkind = 'S' THEN p.privilege IN ('USAGE', 'SELECT', 'UPDATE')
                        AND has_sequence_privilege($1, c.oid, p.privilege)
                   WHEN c.relkind IN ('r', 'm', 'v', 'p', 'f') THEN p.privilege <> 'USAGE'
                        AND has_table_privilege($1, c.oid, p.privilege) END
        """,
        role,
        privileges,
    )
    result: dict[str, set[str]] = {}
    for row in rows:
        result.setdefault(row["relname"], set()).add(row["privilege"])
    return result


async def other_rights(connection: asyncpg.Connection, role: str) -> set[str]:
    """Which of the other rights that matter ``role`` holds."""
    row = await connection.fetchrow(
        f"""
        SELECT has_database_privilege($1, current_database(), 'CONNECT') AS connect,
               has_database_privilege($1, current_database(), 'CREATE') AS create_schema,
               has_schema_privilege($1, 'public', 'USAGE') AS schema_usage,
               has_schema_privilege($1, 'public', 'CREATE') AS schema_create,
               has_function_privilege($1, '{REFRESH}', 'EXECUTE') AS refresh,
               r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
                   OR r.rolbypassrls AS powerful,
               EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid) AS member,
               r.rolcanlogin AS login
        FROM pg_roles r WHERE r.rolname = $1
        """,
        role,
    )
    assert row is not None
    return {name for name, held in row.items() if held}


async def assert_refused(connection: asyncpg.Connection, statements: list[str], role: str) -> None:
    allowed = []
    for statement in statements:
        try:
            async with connection.transaction():
                await connection.execute(f'SET LOCAL ROLE "{role}"')
                await connection.execute(statement)
        except asyncpg.InsufficientPrivilegeError:
            continue
        allowed.append(statement)
    assert not allowed, f"{role} was allowed: {allowed}"


async def test_reader_selects_the_listed_relations_and_can_do_nothing_else(
    admin: asyncpg.Connection, db: LearningDatabase, new_role: Callable[[str], str]
) -> None:
    await db.store_executions(sample.generate(20, seed=1), embeddings=unit_vectors(20))
    await db.refresh_views()
    role = new_role("reader")
    report = await grant_reader(admin, role)
    assert report.created and not report.login
    assert await effective_privileges(admin, role) == {t: {"SELECT"} for t in READ_TABLES}
    assert await other_rights(admin, role) == {"connect", "schema_usage"}
    for table in READ_TABLES:
        async with admin.transaction():
            await admin.execute(f'SET LOCAL ROLE "{role}"')
            await admin.fetch(f"SELECT * FROM {table} LIMIT 1")
    await assert_refused(admin, FORBIDDEN_TO_READER, role)


async def test_refresh_routine_is_no_longer_executable_by_public(
    admin: asyncpg.Connection, new_role: Callable[[str], str]
) -> None:
    bystander = new_role("bystander")
    await admin.execute(f'CREATE ROLE "{bystander}" NOLOGIN')
    can_run = f"SELECT has_function_privilege($1, '{REFRESH}', 'EXECUTE')"
    assert await admin.fetchval(can_run, bystander)  # PostgreSQL's default: PUBLIC may
    await grant_reader(admin, new_role("reader"))
    assert not await admin.fetchval(can_run, bystander)
    await assert_refused(admin, ["SELECT * FROM orb_learning_refresh_views()"], bystander)
    await grant_reader(admin, new_role("reader"))  # idempotent
    assert not await admin.fetchval(can_run, bystander)


async def test_reader_login_runs_the_read_api(
    admin: asyncpg.Connection,
    db: LearningDatabase,
    database_url: str,
    embedder: Embedder,
    new_role: Callable[[str], str],
) -> None:
    records = sample.generate(60, seed=2)
    await db.store_executions(records, embeddings=unit_vectors(60))
    await db.refresh_views()
    role = new_role("reader")
    report = await grant_reader(admin, role, password=PASSWORD)
    assert report.login and report.password_set
    assert PASSWORD not in report.describe() and "PASSWORD '***'" in report.describe()

    url = as_role(database_url, role, PASSWORD)
    async with LearningDatabase(url, embedder=embedder) as reader:
        assert await reader.get_tier_performance(days_back=400)
        assert await reader.get_pool_performance(days_back=400)
        assert await reader.get_solution_patterns(min_usage=1)
        assert len(await reader.view_freshness()) == len(VIEW_NAMES)
        assert await reader.find_similar_executions("Fix a race", days_back=None, threshold=-1)
        quiet = await reader.recommend_route("Fix a race", days_back=None, log=False)
        assert quiet.chosen is not None and not quiet.fallback
        with pytest.raises(InsufficientPrivilegeError):  # the log is the writer's
            await reader.recommend_route("Fix a race", days_back=None)
        with pytest.raises(DatabaseError) as refused:
            await reader.store_executions(records[:1], embeddings=unit_vectors(1))
        assert refused.value.sqlstate == "42501"
        with pytest.raises(DatabaseError):
            await reader.refresh_views()


async def test_writer_stores_refreshes_and_cannot_delete_or_change_the_schema(
    admin: asyncpg.Connection,
    database_url: str,
    embedder: Embedder,
    new_role: Callable[[str], str],
) -> None:
    role = new_role("writer")
    await grant_writer(admin, role, password=PASSWORD)
    expected = {t: {"SELECT"} | WRITER_EXTRA.get(t, set()) for t in READ_TABLES}
    version = int(await admin.fetchval("SELECT current_setting('server_version_num')"))
    if version < 170000:
        expected = {t: p - {"MAINTAIN"} for t, p in expected.items()}
    assert await effective_privileges(admin, role) == expected
    assert await other_rights(admin, role) == {"connect", "schema_usage", "refresh", "login"}

    url = as_role(database_url, role, PASSWORD)
    records = sample.generate(50, seed=3)
    async with LearningDatabase(url, embedder=embedder) as writer:
        assert await writer.store_executions(records, embeddings=unit_vectors(50)) == 50
        changed = records[0].model_copy(update={"success": not records[0].success})
        await writer.store_execution(changed)  # the upsert's UPDATE path, real embedding
        await writer.store_feedback(
            FeedbackRecord(task_id=records[1].task_id, feedback_type="thumbs_up", rating=5)
        )
        await writer.store_dead_letters([DeadLetter(task_id=None, reason="orphan", events=[])])
        async with writer.connection() as connection:
            await refresh.record_failure(connection, changed.timestamp, "test failure")
        if version >= 170000:  # MAINTAIN: the writer refreshes without owning the views
            results = await writer.refresh_views()
            assert {r.status for r in results} == {"success"}
        assert await writer.get_tier_performance(days_back=400)
        logged = await writer.recommend_route("Fix a race", days_back=None)  # log=True
    assert await admin.fetchval("SELECT count(*) FROM executions") == 50
    assert await admin.fetchval(
        "SELECT count(*) FROM route_recommendation_outcomes WHERE recommendation_id = $1",
        logged.recommendation_id,
    ) == 1  # fmt: skip
    stored = await admin.fetchval(
        "SELECT success FROM executions WHERE task_id = $1", changed.task_id
    )
    assert stored is changed.success

    connection = await asyncpg.connect(url)  # the login role itself, not SET ROLE
    try:
        for statement in FORBIDDEN_TO_BOTH:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
    finally:
        await connection.close()


async def test_grants_are_idempotent_and_rotate_the_password(
    admin: asyncpg.Connection, new_role: Callable[[str], str]
) -> None:
    role = new_role("reader")
    first = await grant_reader(admin, role, password="first")
    stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    second = await grant_reader(admin, role, password="second")
    assert first.created and not second.created
    assert second.statements[0].startswith(f"ALTER ROLE {role} LOGIN PASSWORD '***'")
    assert first.statements[1:] == second.statements[1:]
    rotated = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    assert stored.startswith("SCRAM-SHA-256$4096:") and rotated != stored
    third = await grant_reader(admin, role)  # no --login: the role keeps its login
    assert third.login and not any("ROLE" in s for s in third.statements)
    assert await effective_privileges(admin, role) == {t: {"SELECT"} for t in READ_TABLES}


PASSWORDS = [
    "plain",
    "pässwörd ẞ",
    "\uff46\uff55\u00a0w",
    "\u200b",
    "a\u200bb\u00ad",
    "\u0627\u0031",
]


@pytest.mark.parametrize("password", PASSWORDS)
async def test_scram_verifier_matches_the_servers(
    admin: asyncpg.Connection, new_role: Callable[[str], str], password: str
) -> None:
    role = new_role("scram")
    literal = password.replace("'", "''")
    await admin.execute("SET password_encryption = 'scram-sha-256'")
    await admin.execute(f"CREATE ROLE \"{role}\" PASSWORD '{literal}'")
    stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    iterations, salt = stored.split("$")[1].split(":")
    mine = scram_sha_256_verifier(password, iterations=int(iterations), salt=base64.b64decode(salt))
    assert mine == stored


async def test_refuses_roles_a_grant_cannot_restrict(
    admin: asyncpg.Connection, new_role: Callable[[str], str]
) -> None:
    for name in ("", "public", "PUBLIC", "pg_monitor", "current_user", "x" * 64):
        with pytest.raises(ConfigurationError):
            check_role_name(name)
    superuser = new_role("super")
    await admin.execute(f'CREATE ROLE "{superuser}" SUPERUSER NOLOGIN')
    with pytest.raises(ConfigurationError, match="superuser"):
        await grant_reader(admin, superuser)
    with pytest.raises(ConfigurationError, match="running the grant"):
        await grant_writer(admin, await admin.fetchval("SELECT current_user"))
    with pytest.raises(ConfigurationError, match="empty"):
        await grant_reader(admin, new_role("reader"), password="")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    command = [sys.executable, "-m", "orb_learning.cli", *args]
    return subprocess.run(command, env={**environment, **env}, capture_output=True, text=True)


async def test_cli_grants_without_showing_the_password(
    admin: asyncpg.Connection, database_url: str, new_role: Callable[[str], str]
) -> None:
    from orb_learning.cli import COMMAND_MODULES

    reader, writer = new_role("reader"), new_role("writer")
    env = {"ORB_TEST_ROLE_PASSWORD": PASSWORD}
    arguments = ["grant-reader", reader, "--password-env", "ORB_TEST_ROLE_PASSWORD"]
    result = cli("--dsn", database_url, *arguments, env=env)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert f"reader role {reader}: created (LOGIN, password set)" in result.stdout
    assert await effective_privileges(admin, reader) == {t: {"SELECT"} for t in READ_TABLES}

    group = ["db"] if "db" in COMMAND_MODULES else []
    result = cli("--dsn", database_url, *group, "grant-writer", writer, env={})
    assert result.returncode == 0, result.stderr
    assert "writer role" in result.stdout and "NOLOGIN" in result.stdout
    assert "refresh" in await other_rights(admin, writer)

    missing = cli("--dsn", database_url, "grant-reader", reader, "--password-env", "NOPE_X", env={})
    assert missing.returncode == 1 and "NOPE_X" in missing.stderr


async def test_a_grant_on_an_older_revision_skips_the_newer_tables_then_grants_them(
    empty_database_url: str,
) -> None:
    await migrations.upgrade(empty_database_url, "0009")
    role = f"orb_test_reader_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(empty_database_url)
    try:
        report = await grant_reader(admin, role)
        assert any("route_recommendations does not exist yet" in n for n in report.notes)
        await migrations.upgrade(empty_database_url)
        again = await grant_reader(admin, role)
        assert not again.notes
        assert "SELECT" in (await effective_privileges(admin, role))["route_recommendations"]
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
