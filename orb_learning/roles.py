"""Least-privilege roles: a *reader* for dashboards, psql and analytics, a *writer* for services.

:func:`grant_reader` and :func:`grant_writer` create the role when it is missing (NOLOGIN
unless a login is asked for) and grant it exactly what its job needs, on the objects of
orb-learning's schema. They are idempotent (run them again after a migration that adds or
replaces objects: privileges are per object) and additive: privileges the role already had
are left alone.

Every identifier is quoted by the server (``format('%I')``) and a password never travels as
text: it is turned into a SCRAM-SHA-256 verifier here, as ``psql``'s ``\\password`` does,
so neither the server's statement log nor ``pg_stat_statements`` ever sees it.

Functions are executable by PUBLIC by default, so both grants also ``REVOKE EXECUTE`` on
``orb_learning_refresh_views()`` ``FROM PUBLIC`` (idempotent); the writer then gets it
explicitly. On PostgreSQL 17+ the writer also gets ``MAINTAIN`` on the materialized views, the
privilege ``REFRESH MATERIALIZED VIEW`` needs, so it can run the refresh routine without
owning anything; on older servers only the views' owner can refresh them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._catalog import CURRENT_VIEWS, PUBLIC_VIEWS
from ._partition_routines import CREATE_FUNCTION
from ._routines import REFRESH_FUNCTION
from .errors import ConfigurationError, SchemaNotReadyError

if TYPE_CHECKING:
    import asyncpg

REFRESH_SIGNATURE_ARGS = "(interval, interval, boolean)"
VIEW_NAMES: tuple[str, ...] = tuple(view.name for view in CURRENT_VIEWS)
PUBLIC_VIEW_NAMES: tuple[str, ...] = tuple(view.name for view in PUBLIC_VIEWS)
"""The plain views over the materialized ones (revision 0007): what users read."""
READ_TABLES: tuple[str, ...] = (
    "executions",
    "execution_keys",
    "feedback",
    *(name for name in PUBLIC_VIEW_NAMES if name not in VIEW_NAMES),
    *VIEW_NAMES,
    "view_refresh_log",
    "view_watermarks",
    "view_history_dirty",
    "telemetry_dead_letters",
    "route_recommendations",
    "route_recommendation_outcomes",
    "alembic_version",
)
"""What both roles may SELECT. ``alembic_version`` (the schema revision, one row) is there
so that ``LearningDatabase`` and ``orb-learning refresh --status`` can connect as the role:
they check the revision first."""
WRITE_PRIVILEGES: tuple[tuple[str, str], ...] = (
    ("INSERT, UPDATE", "executions"),  # upserts by task_id; feedback updates user_rating
    ("INSERT, UPDATE", "execution_keys"),  # the upsert locks its keys (revision 0011)
    ("INSERT", "feedback"),
    ("INSERT", "telemetry_dead_letters"),
    ("INSERT", "view_refresh_log"),  # the refresh routine's log, and failures logged by it
    ("UPDATE", "view_watermarks"),  # the routine moves the watermarks
    ("DELETE", "view_history_dirty"),  # and clears the marks of the history it rebuilt
    ("INSERT", "route_recommendations"),  # recommend_route(log=True)
)
MAINTAIN_MIN_SERVER_VERSION = 170000
_RESERVED = frozenset({"public", "none", "current_user", "session_user", "current_role"})


@dataclass
class RoleReport:
    """What a grant did: ``statements`` are the executed SQL, a password shown as ``***``."""

    role: str
    kind: str
    created: bool = False
    login: bool = False
    password_set: bool = False
    statements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        state = "created" if self.created else "existed"
        login = "LOGIN" if self.login else "NOLOGIN"
        password = ", password set" if self.password_set else ""
        lines = [f"{self.kind} role {self.role}: {state} ({login}{password})"]
        lines += [f"  {statement}" for statement in self.statements]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


async def grant_reader(
    connection: asyncpg.Connection, role: str, *, login: bool = False, password: str | None = None
) -> RoleReport:
    """Create ``role`` if missing and let it read: CONNECT on the database, USAGE on the
    schema, SELECT on :data:`READ_TABLES`, nothing else (no EXECUTE on the refresh routine,
    which is revoked from PUBLIC)."""
    return await _grant(connection, role, "reader", login=login, password=password)


async def grant_writer(
    connection: asyncpg.Connection, role: str, *, login: bool = False, password: str | None = None
) -> RoleReport:
    """Reader rights plus what storing executions, feedback and dead letters and running the
    refresh routine need: :data:`WRITE_PRIVILEGES`, TEMPORARY on the database (the batch
    upsert's staging table), EXECUTE on the refresh routine and, on PostgreSQL 17+,
    MAINTAIN on the views. No DELETE, TRUNCATE, DDL or ownership."""
    return await _grant(connection, role, "writer", login=login, password=password)


async def _grant(
    connection: asyncpg.Connection, role: str, kind: str, *, login: bool, password: str | None
) -> RoleReport:
    check_role_name(role)
    if password is not None and not password:
        raise ConfigurationError("the password is empty")
    login = login or password is not None
    report = RoleReport(role=role, kind=kind, login=login, password_set=password is not None)
    async with connection.transaction():
        schema = await _schema(connection)
        await _ensure_role(connection, report, password)
        database = await connection.fetchval("SELECT current_database()")
        function = f"%I.{REFRESH_FUNCTION}{REFRESH_SIGNATURE_ARGS}"
        await _run(connection, report, f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC", schema)
        await _run(connection, report, "GRANT CONNECT ON DATABASE %I TO %I", database, role)
        await _run(connection, report, "GRANT USAGE ON SCHEMA %I TO %I", schema, role)
        for table in READ_TABLES:
            if await _exists(connection, schema, table, report):
                await _run(
                    connection, report, "GRANT SELECT ON TABLE %I.%I TO %I", schema, table, role
                )
        if kind == "writer":
            await _grant_writes(connection, report, schema, database, function)
    return report


async def _grant_writes(
    connection: asyncpg.Connection, report: RoleReport, schema: str, database: str, function: str
) -> None:
    role = report.role
    await _run(connection, report, "GRANT TEMPORARY ON DATABASE %I TO %I", database, role)
    for privileges, table in WRITE_PRIVILEGES:
        if await _exists(connection, schema, table, None):
            await _run(
                connection, report, f"GRANT {privileges} ON TABLE %I.%I TO %I", schema, table, role
            )
    await _run(connection, report, f"GRANT EXECUTE ON FUNCTION {function} TO %I", schema, role)
    if await _has_function(connection, schema, CREATE_FUNCTION):  # the refresher's tick
        partitions = f"%I.{CREATE_FUNCTION}(integer, text)"
        await _run(
            connection, report, f"GRANT EXECUTE ON FUNCTION {partitions} TO %I", schema, role
        )
    version = int(await connection.fetchval("SELECT current_setting('server_version_num')"))
    if version >= MAINTAIN_MIN_SERVER_VERSION:
        for view in VIEW_NAMES:
            await _run(
                connection, report, "GRANT MAINTAIN ON TABLE %I.%I TO %I", schema, view, role
            )
    else:
        report.notes.append(
            "PostgreSQL < 17 has no MAINTAIN privilege: only the views' owner can refresh "
            "them, so run the refresher (orb-learning refresh) with the owner's DSN"
        )


async def _has_function(connection: asyncpg.Connection, schema: str, name: str) -> bool:
    found = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = $1 AND p.proname = $2)",
        schema,
        name,
    )
    return bool(found)


def check_role_name(role: str) -> None:
    """Refuse names that would not mean one ordinary role (PUBLIC, pg_*, too long...)."""
    if not isinstance(role, str) or not role.strip():
        raise ConfigurationError("the role name is empty")
    if len(role.encode()) > 63:
        raise ConfigurationError(f"role name {role!r} is longer than 63 bytes")
    if role.lower() in _RESERVED or role.lower().startswith("pg_") or "\x00" in role:
        raise ConfigurationError(f"{role!r} is reserved: choose another role name")


async def _schema(connection: asyncpg.Connection) -> str:
    schema: str | None = await connection.fetchval(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass('executions')"
    )
    if schema is None:
        raise SchemaNotReadyError(
            "the database is not migrated (no executions table): run `alembic upgrade head` first"
        )
    return schema


async def _ensure_role(
    connection: asyncpg.Connection, report: RoleReport, password: str | None
) -> None:
    role = report.role
    if role == await connection.fetchval("SELECT current_user"):
        raise ConfigurationError(
            f"{role!r} is the role running the grant (the owner): name another"
        )
    existing = await connection.fetchrow(
        "SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = $1", role
    )
    if existing is not None and existing["rolsuper"]:
        raise ConfigurationError(f"role {role!r} is a superuser: no grant can restrict it")
    verifier = None if password is None else scram_sha_256_verifier(password)
    secret = [] if verifier is None else [verifier]
    clause = "" if verifier is None else " PASSWORD %L"
    if existing is None:
        attributes = "LOGIN" if report.login else "NOLOGIN"
        template = f"CREATE ROLE %I {attributes}{clause}"
        await _run(connection, report, template, role, *secret, secret=verifier)
        report.created = True
    elif report.login:
        await _run(
            connection, report, f"ALTER ROLE %I LOGIN{clause}", role, *secret, secret=verifier
        )
    else:
        report.login = bool(existing["rolcanlogin"])


async def _exists(
    connection: asyncpg.Connection, schema: str, table: str, report: RoleReport | None
) -> bool:
    """Whether the table is there: a database of an older revision lacks the newer ones
    (noted; grant again after ``db upgrade``)."""
    found = await connection.fetchval(
        "SELECT to_regclass(format('%I.%I', $1::text, $2::text))", schema, table
    )
    if found is None and report is not None:
        report.notes.append(
            f"{table} does not exist yet (an older revision): grant again after upgrading"
        )
    return found is not None


async def _run(
    connection: asyncpg.Connection,
    report: RoleReport,
    template: str,
    *arguments: str,
    secret: str | None = None,
) -> None:
    """Have the server quote ``arguments`` into ``template`` (``%I``, ``%L``), then run it."""
    statement: str = await connection.fetchval(
        "SELECT format($1, VARIADIC $2::text[])", template, list(arguments)
    )
    await connection.execute(statement)
    shown = statement if secret is None else statement.replace(secret, "***")
    report.statements.append(shown)


def scram_sha_256_verifier(
    password: str, *, iterations: int = 4096, salt: bytes | None = None
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677, the
    format of ``pg_authid.rolpassword``), with a random salt unless one is given."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    encoded = [base64.b64encode(part).decode() for part in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{encoded[0]}${encoded[1]}:{encoded[2]}"


_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,
)


def saslprep(password: str) -> str:
    """SASLprep (RFC 4013) as PostgreSQL applies it to a SCRAM password (``pg_saslprep``,
    which libpq shares): the original password when it is ASCII or SASLprep fails."""
    if password.isascii():
        return password
    mapped = "".join(  # spaces first: U+200B is in both tables, and PostgreSQL maps it
        " " if stringprep.in_table_c12(c) else "" if stringprep.in_table_b1(c) else c
        for c in password
    )
    normalized = unicodedata.normalize("NFKC", mapped)
    if not normalized or any(check(c) for c in normalized for check in _PROHIBITED):
        return password
    if any(stringprep.in_table_d1(c) for c in normalized) and (
        not (stringprep.in_table_d1(normalized[0]) and stringprep.in_table_d1(normalized[-1]))
        or any(stringprep.in_table_d2(c) for c in normalized)
    ):
        return password
    return normalized
