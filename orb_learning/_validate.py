"""Everything the store needs from its database, checked one by one (``orb-learning db
validate``): the extension and its version, the tables, their columns and constraints,
every index (HNSW included), the views and their unique indexes, the routines (present,
``search_path`` pinned with ``pg_temp`` last, the only SECURITY DEFINER one being the
history marks' and the partitions' routines) and the Alembic revision. Each check says
what it found, so a missing piece is named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import migrations
from ._catalog import CURRENT_VIEWS, PUBLIC_VIEWS
from ._history_marks import MARK_FUNCTION
from ._partition_routines import CREATE_FUNCTION, LIST_FUNCTION, TRACK_FUNCTION
from ._route_log import OUTCOMES_VIEW
from ._routines import REFRESH_FUNCTION
from .schema import executions, metadata

EMBEDDING_TYPE = str(executions.c.embedding.type).lower()

if TYPE_CHECKING:
    import asyncpg

MIN_PGVECTOR = (0, 8)


@dataclass(frozen=True)
class Check:
    """One requirement: ``ok`` when present and right, with what was found."""

    what: str
    ok: bool
    detail: str = ""


async def validate(connection: asyncpg.Connection) -> list[Check]:
    """All the checks, in reading order; nothing is changed."""
    checks = [await _pgvector(connection), await _revision(connection)]
    for table in metadata.sorted_tables:
        checks += await _table(connection, table.name, [c.name for c in table.columns])
        checks += await _constraints(
            connection, table.name, [str(c.name) for c in table.constraints if c.name]
        )
        checks += await _indexes(connection, table.name, [i.name for i in table.indexes if i.name])
    checks += await _hnsw(connection)
    for view in CURRENT_VIEWS:
        checks += await _view(connection, view.name, view.unique_index)
    # the views over the materialized parts (revision 0007), the recommendations' (0010)
    for name in (*(public.name for public in PUBLIC_VIEWS), OUTCOMES_VIEW):
        found = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_views WHERE viewname = $1 UNION ALL "
            "SELECT 1 FROM pg_matviews WHERE matviewname = $1)",
            name,
        )
        checks.append(Check(f"view {name}", bool(found), "" if found else "missing"))
    return checks + await _routines(connection)


ROUTINES = """\
SELECT p.proname, p.prosecdef, p.proconfig, n.nspname
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.oid = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass('executions'))
  AND (p.proname = ANY($1::text[]) OR p.prosecdef)"""
SECURITY_DEFINER = {MARK_FUNCTION, TRACK_FUNCTION, CREATE_FUNCTION}
"""The routines that run with their owner's rights, and only these (see history_marks and
partition_routines)."""
EXPECTED = (REFRESH_FUNCTION, MARK_FUNCTION, TRACK_FUNCTION, CREATE_FUNCTION, LIST_FUNCTION)


async def _routines(connection: asyncpg.Connection) -> list[Check]:
    """Each routine present, pinned (``search_path`` = its schema, then ``pg_temp``: never
    a caller's temporary objects first), and SECURITY DEFINER only where it must be."""
    found = {row["proname"]: row for row in await connection.fetch(ROUTINES, list(EXPECTED))}
    checks = []
    for name in sorted(set(EXPECTED) | set(found)):
        row = found.get(name)
        if row is None:
            checks.append(Check(f"function {name}()", False, "missing"))
            continue
        path = search_path(row["proconfig"])
        pinned = (
            path is not None
            and path[-1:] == ["pg_temp"]
            and set(path[:-1]) <= {row["nspname"], "pg_catalog"}
        )
        definer = "SECURITY DEFINER" if row["prosecdef"] else "SECURITY INVOKER"
        rights_ok = bool(row["prosecdef"]) == (name in SECURITY_DEFINER)
        detail = f"{definer}, search_path={', '.join(path) if path else 'not set'}"
        checks.append(Check(f"function {name}() pinned", pinned and rights_ok, detail))
    return checks


def search_path(config: list[str] | None) -> list[str] | None:
    """The schemas of a routine's ``SET search_path`` (``proconfig``), unquoted."""
    for setting in config or ():
        name, _, value = setting.partition("=")
        if name == "search_path":
            return [part.strip().strip('"') for part in value.split(",")]
    return None


async def _pgvector(connection: asyncpg.Connection) -> Check:
    version = await connection.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
    )
    if version is None:
        return Check("extension vector (pgvector)", False, "not installed in this database")
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    ok = numbers >= MIN_PGVECTOR
    wanted = ".".join(map(str, MIN_PGVECTOR))
    return Check("extension vector (pgvector)", ok, version if ok else f"{version} < {wanted}")


async def _revision(connection: asyncpg.Connection) -> Check:
    head = migrations.head_revision()
    try:
        current = await connection.fetchval("SELECT version_num FROM alembic_version")
    except Exception:
        current = None
    detail = f"{current or 'not migrated'} (head is {head})"
    return Check("Alembic revision at head", current == head, detail)


async def _table(connection: asyncpg.Connection, table: str, columns: list[str]) -> list[Check]:
    found = await connection.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
        "WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
        f"public.{table}",
    )
    if not found:
        return [Check(f"table {table}", False, "missing")]
    have = {row["attname"]: row["type"] for row in found}
    missing = [c for c in columns if c not in have]
    detail = f"missing columns: {', '.join(missing)}" if missing else f"{len(columns)} columns"
    checks = [Check(f"table {table}", not missing, detail)]
    if table == "executions" and "embedding" in have:
        want = EMBEDDING_TYPE  # the metadata's type, as format_type() spells it
        ok = have["embedding"] == want
        checks.append(Check(f"executions.embedding is {want}", ok, have["embedding"]))
    return checks


async def _constraints(connection: asyncpg.Connection, table: str, names: list[str]) -> list[Check]:
    found = {
        row["conname"]
        for row in await connection.fetch(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1)",
            f"public.{table}",
        )
    }
    missing = sorted(set(names) - found)
    detail = f"missing: {', '.join(missing)}" if missing else f"{len(names)} present"
    return [Check(f"constraints of {table}", not missing, detail)]


async def _indexes(connection: asyncpg.Connection, table: str, names: list[str]) -> list[Check]:
    found = {
        row["indexname"]
        for row in await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1",
            table,
        )
    }
    return [
        Check(f"index {name}", name in found, "" if name in found else "missing") for name in names
    ]


async def _hnsw(connection: asyncpg.Connection) -> list[Check]:
    definition = await connection.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_executions_embedding_hnsw'"
    )
    ok = bool(definition) and "hnsw" in definition and "vec_cosine_ops" in definition
    return [Check("HNSW index uses cosine ops", ok, "" if ok else f"found: {definition}")]


async def _view(connection: asyncpg.Connection, name: str, unique_index: str) -> list[Check]:
    exists = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_matviews WHERE matviewname = $1)", name
    )
    unique = await connection.fetchval(
        "SELECT indexdef LIKE 'CREATE UNIQUE%' FROM pg_indexes WHERE indexname = $1", unique_index
    )
    return [
        Check(f"materialized view {name}", bool(exists), "" if exists else "missing"),
        Check(f"unique index {unique_index}", bool(unique), "" if unique else "missing"),
    ]
