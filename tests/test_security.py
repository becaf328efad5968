"""Attacks a writer or a reader could try, replayed on a real server: none gets the owner's
rights; and connection strings in every form, whose passwords never reach a message."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import pytest

from orb_learning import ConfigurationError, LearningDatabase, migrations
from orb_learning._validate import validate
from orb_learning.dsn import normalize, redact
from orb_learning.roles import grant_reader, grant_writer
from tests.test_roles import as_role

PASSWORD = "S3cr3t-pw"
# The writer's trap: temporary tables named like the ones the SECURITY DEFINER trigger
# function writes, and a trigger of the writer's own that tries to act as its caller.
TRAP = """
CREATE TEMP TABLE view_watermarks (view_name text PRIMARY KEY, watermark timestamptz);
INSERT INTO view_watermarks VALUES
    ('tier_performance_history_mv', 'infinity'), ('pool_performance_history_mv', 'infinity'),
    ('solution_patterns_history_mv', 'infinity');
CREATE TEMP TABLE view_history_dirty (view_name text PRIMARY KEY, since timestamptz);
CREATE FUNCTION pg_temp.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'CREATE TABLE IF NOT EXISTS public.{marker} (who text)';
    EXECUTE 'INSERT INTO public.{marker} VALUES (current_user)';
    RETURN NEW;
END $$;
CREATE TRIGGER escalate BEFORE INSERT ON pg_temp.view_history_dirty
    FOR EACH ROW EXECUTE FUNCTION pg_temp.escalate();
"""
OLD_EXECUTION = (
    'INSERT INTO executions (task_id, "timestamp", task_type, task_description, repo, '
    "model_tier, pool_type, routing_confidence, success, duration_seconds, cost_estimate, "
    "actual_cost) VALUES (gen_random_uuid(), now() - interval '10 days', 't', 'd', 'r', "
    "'small', 'p', 0.5, true, 1, 0, 0)"
)


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def new_role(database_url: str) -> AsyncIterator[Callable[[str], str]]:
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


async def attack(url: str, marker: str) -> BaseException | None:
    """Set the trap and insert an old execution as the role of ``url``; the error, if any."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(TRAP.format(marker=marker))
        await connection.execute(OLD_EXECUTION)
    except asyncpg.PostgresError as exc:
        return exc
    finally:
        await connection.close()
    return None


async def escalated(admin: asyncpg.Connection, marker: str) -> str | None:
    """Who the trap ran as, if it ran."""
    if await admin.fetchval("SELECT to_regclass($1)", f"public.{marker}") is None:
        return None
    who: str = await admin.fetchval(f"SELECT who FROM public.{marker}")
    await admin.execute(f"DROP TABLE public.{marker}")
    return who


async def test_a_writer_trap_ran_as_the_owner_before_revision_0009_and_not_after(
    empty_database_url: str,
) -> None:
    database_url = empty_database_url
    await migrations.upgrade(database_url, "0008")  # a database of the previous release
    admin = await asyncpg.connect(database_url)
    role = f"orb_test_writer_{uuid.uuid4().hex[:10]}"
    try:
        await _writer_trap(admin, database_url, role)
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def _writer_trap(admin: asyncpg.Connection, database_url: str, role: str) -> None:
    await grant_writer(admin, role, password=PASSWORD)
    owner = await admin.fetchval("SELECT current_user")
    marker = f"pwned_{uuid.uuid4().hex[:8]}"
    assert await attack(as_role(database_url, role, PASSWORD), marker) is None
    assert await escalated(admin, marker) == owner  # the flaw this revision closes

    await migrations.upgrade(database_url)
    await admin.execute("SELECT * FROM orb_learning_refresh_views()")  # seals the history
    await admin.execute("TRUNCATE view_history_dirty")
    assert await attack(as_role(database_url, role, PASSWORD), marker) is None
    assert await escalated(admin, marker) is None
    marks = await admin.fetch("SELECT view_name FROM view_history_dirty")
    assert len(marks) == 3, "the real marks table must still be written"


async def test_a_reader_can_neither_insert_nor_trigger_anything(
    admin: asyncpg.Connection, database_url: str, new_role: Callable[[str], str]
) -> None:
    role = new_role("reader")
    await grant_reader(admin, role, password=PASSWORD)
    marker = f"pwned_{uuid.uuid4().hex[:8]}"
    error = await attack(as_role(database_url, role, PASSWORD), marker)
    assert isinstance(error, asyncpg.InsufficientPrivilegeError)
    assert await escalated(admin, marker) is None


async def test_validate_checks_that_every_routine_is_pinned(admin: asyncpg.Connection) -> None:
    checks = {c.what: c for c in await validate(admin)}
    for name in ("orb_learning_refresh_views", "orb_learning_mark_history_dirty"):
        check = checks[f"function {name}() pinned"]
        assert check.ok, check.detail
        assert "search_path=public, pg_temp" in check.detail
    assert "SECURITY DEFINER" in checks["function orb_learning_mark_history_dirty() pinned"].detail

    await admin.execute("ALTER FUNCTION orb_learning_mark_history_dirty() RESET search_path")
    await admin.execute(
        "ALTER FUNCTION orb_learning_refresh_views(interval, interval, boolean) SECURITY DEFINER"
    )
    checks = {c.what: c for c in await validate(admin)}
    assert not checks["function orb_learning_mark_history_dirty() pinned"].ok
    assert not checks["function orb_learning_refresh_views() pinned"].ok


# --- connection strings ----------------------------------------------------------------


def key_value(url: str) -> str:
    """The libpq key/value form of a test URL (socket directory or host, user, database)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.pop("host", parts.hostname or "localhost")
    pairs = {"host": host, "user": parts.username or "postgres", "dbname": parts.path[1:]}
    if parts.port:
        pairs["port"] = str(parts.port)
    pairs["password"] = "it's a s3cret"
    return " ".join(f"{k}='{v.replace(chr(39), chr(92) + chr(39))}'" for k, v in pairs.items())


async def test_a_key_value_connection_string_works_like_its_url(
    database_url: str, embedder: object
) -> None:
    dsn = key_value(database_url)
    async with LearningDatabase(dsn, embedder=embedder) as db:  # type: ignore[arg-type]
        assert await db.get_tier_performance(days_back=1) == []
        assert db.dsn is not None and "s3cret" not in db.dsn and "***" in db.dsn
    assert urlsplit(normalize(dsn)).password == "it%27s%20a%20s3cret"


@pytest.mark.parametrize(
    "dsn",
    [
        f"host=localhost password={PASSWORD} dbname=x junk",
        f"host=localhost password='{PASSWORD} dbname=x",
        f"mysql://u:{PASSWORD}@host/db",
        f"postgresql://u:{PASSWORD}@[::1/orb",
        f"postgresql://u:{PASSWORD}@host:notaport/db",
        f"host=localhost port=notaport password={PASSWORD}",
    ],
)
def test_a_bad_connection_string_is_named_and_its_password_never_shown(dsn: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        LearningDatabase(dsn)
    error: BaseException | None = raised.value
    while error is not None:  # nor in any exception chained to it (a -v traceback)
        assert PASSWORD not in str(error) and PASSWORD not in repr(error)
        error = error.__cause__ or error.__context__
    assert PASSWORD not in redact(dsn)
    for verbose in ([], ["-v"]):
        result = subprocess.run(
            [sys.executable, "-m", "orb_learning.cli", *verbose, "--dsn", dsn, "tiers"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert PASSWORD not in result.stdout + result.stderr
        if not verbose:
            assert result.stderr.count("\n") == 1, result.stderr


def test_an_unreachable_key_value_server_is_one_line_without_its_password() -> None:
    dsn = f"host=127.0.0.1 port=1 user=u password={PASSWORD} dbname=x"
    result = subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", "--dsn", dsn, "tiers"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "PostgreSQL is unavailable" in result.stderr
    assert result.stderr.count("\n") == 1 and PASSWORD not in result.stderr
