"""The schema as Alembic builds it (the real CLI in a subprocess, a real server), checked
against the contract through the catalog rather than the migration's source."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from sqlalchemy.dialects import postgresql

from orb_learning import migrations
from orb_learning._catalog import CURRENT_VIEWS, PUBLIC_VIEWS
from orb_learning._codecs import init_connection
from orb_learning.models import ExecutionRecord
from orb_learning.schema import executions

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "ORB_LEARNING_DATABASE_URL"
DOWN_SERVER = "postgresql://nobody@127.0.0.1:1/none"

BTREE_INDEXES = {
    "idx_executions_repo_task": 'USING btree (repo, task_type, "timestamp" DESC)',
    "idx_executions_tier_success": 'USING btree (model_tier, success, "timestamp" DESC)',
    "idx_executions_pool_duration": "USING btree (pool_type, success, duration_seconds)",
    "idx_executions_quality_trend": 'USING btree (repo, quality_score, "timestamp" DESC)',
    "idx_executions_timestamp": 'USING btree ("timestamp")',
    "idx_executions_recommendation_id": "USING btree (recommendation_id) "
    "WHERE (recommendation_id IS NOT NULL)",
}
HNSW_INDEX = "idx_executions_embedding_hnsw"


async def alembic(
    *args: str, dsn: str | None = None, env_dsn: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m alembic [-x dsn=...] <args>`` from the repository root."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if env_dsn is not None:
        env[ENV_VAR] = env_dsn
    command = [sys.executable, "-m", "alembic"]
    if dsn is not None:
        command += ["-x", f"dsn={dsn}"]
    return await asyncio.to_thread(
        subprocess.run,
        [*command, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    output = f"{result.stdout}{result.stderr}"
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{output}"
    return result.stdout


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
        return rows
    finally:
        await connection.close()


async def public_relations(url: str) -> set[str]:
    """Every relation (table, view, index, sequence) left in the public schema."""
    rows = await fetch(
        url,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public'",
    )
    return {row["relname"] for row in rows}


async def version_rows(url: str) -> list[str] | None:
    """The rows of alembic_version, or None when the table does not exist."""
    try:
        return [row[0] for row in await fetch(url, "SELECT version_num FROM alembic_version")]
    except asyncpg.UndefinedTableError:
        return None


async def assert_at_base(url: str) -> None:
    assert await public_relations(url) <= {"alembic_version", "alembic_version_pkc"}
    assert await fetch(url, "SELECT matviewname FROM pg_matviews") == []
    assert await fetch(url, "SELECT 1 FROM pg_extension WHERE extname = 'vector'") == []
    assert await version_rows(url) in (None, [])


async def assert_at_head(url: str) -> None:
    assert await version_rows(url) == [migrations.head_revision()]
    assert "executions" in await public_relations(url)


# --- 1. the CLI round trip ------------------------------------------------------------------
async def test_cli_upgrade_check_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    head = migrations.head_revision()
    ok(await alembic("upgrade", "head", dsn=url))
    await assert_at_head(url)

    check = await alembic("check", dsn=url)
    assert "No new upgrade operations detected" in ok(check)

    ok(await alembic("downgrade", "base", dsn=url))
    await assert_at_base(url)
    assert head not in ok(await alembic("current", dsn=url))

    ok(await alembic("upgrade", "head", dsn=url))
    await assert_at_head(url)
    current = ok(await alembic("current", dsn=url))
    assert current.split()[0] == head and "(head)" in current


async def test_cli_takes_the_database_from_the_environment(empty_database_url: str) -> None:
    ok(await alembic("upgrade", "head", env_dsn=empty_database_url))
    await assert_at_head(empty_database_url)
    current = ok(await alembic("current", env_dsn=empty_database_url))
    assert current.split()[0] == migrations.head_revision()


async def test_cli_without_a_database_says_how_to_give_one() -> None:
    result = await alembic("current")
    assert result.returncode != 0
    assert ENV_VAR in result.stderr and "-x dsn=" in result.stderr


# --- 2. the schema contract ------------------------------------------------------------------
async def test_columns_match_the_metadata(connection: asyncpg.Connection) -> None:
    rows = await connection.fetch(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid) AS default
           FROM pg_attribute a
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = 'public.executions'::regclass
             AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum"""
    )
    actual = {row["attname"]: row for row in rows}
    assert [row["attname"] for row in rows] == [column.name for column in executions.columns]
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    for column in executions.columns:
        row = actual[column.name]
        assert row["type"] == column.type.compile(dialect=dialect).lower(), column.name
        assert row["attnotnull"] is (not column.nullable), column.name
    assert actual["embedding"]["type"] == "halfvec(384)"
    assert actual["metadata"]["type"] == "jsonb"
    for name in ("timestamp", "uploaded_at"):
        assert actual[name]["type"] == "timestamp with time zone"
    assert actual["task_id"]["type"] == "uuid"
    defaults = {name: row["default"] for name, row in actual.items() if row["default"] is not None}
    assert defaults == {
        "file_count": "0",
        "estimated_tokens": "0",
        "complexity_score": "50",
        "metadata": "'{}'::jsonb",
        "uploaded_at": "now()",
    }
    primary = await connection.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'public.executions'::regclass AND contype = 'p'"
    )
    assert primary == 'PRIMARY KEY (task_id, "timestamp")'  # task_id alone: execution_keys


async def test_indexes_are_the_seed_ones_plus_hnsw(connection: asyncpg.Connection) -> None:
    rows = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = 'public' AND tablename = 'executions'"
    )
    definitions = {row["indexname"]: row["indexdef"] for row in rows}
    assert set(definitions) == {*BTREE_INDEXES, HNSW_INDEX, "pk_executions"}
    for name, columns in BTREE_INDEXES.items():
        assert definitions[name].endswith(columns), definitions[name]
    hnsw = definitions[HNSW_INDEX]
    assert "USING hnsw (embedding halfvec_cosine_ops)" in hnsw, hnsw
    assert "m='16'" in hnsw and "ef_construction='128'" in hnsw, hnsw


def valid_row(**overrides: Any) -> dict[str, Any]:
    return {
        "task_id": uuid.uuid4(), "timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "task_type": "refactor", "task_description": "Split the parser module",
        "repo": "org/repo", "model_tier": "sonnet", "pool_type": "standard",
        "routing_confidence": 0.8, "success": True, "duration_seconds": 12.5,
        "cost_estimate": 0.02, "actual_cost": 0.03, **overrides,
    }  # fmt: skip


async def insert(connection: asyncpg.Connection, row: dict[str, Any]) -> None:
    columns = ", ".join(f'"{name}"' for name in row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await connection.execute(f"INSERT INTO executions ({columns}) VALUES ({params})", *row.values())


async def test_a_valid_raw_row_gets_the_defaults(connection: asyncpg.Connection) -> None:
    row = valid_row()
    await insert(connection, row)
    stored = await connection.fetchrow(
        "SELECT file_count, estimated_tokens, complexity_score, metadata::text AS metadata, "
        "uploaded_at > now() - interval '1 minute' AS recent FROM executions WHERE task_id = $1",
        row["task_id"],
    )
    assert dict(stored) == {
        "file_count": 0,
        "estimated_tokens": 0,
        "complexity_score": 50,
        "metadata": "{}",
        "recent": True,
    }


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("routing_confidence", 1.5), ("routing_confidence", -0.1),
        ("complexity_score", 101), ("complexity_score", -1),
        ("quality_score", -1), ("quality_score", 101),
        ("user_rating", 6), ("user_rating", 0),
        ("duration_seconds", -1.0), ("cost_estimate", -0.01), ("actual_cost", -0.01),
        ("file_count", -1), ("estimated_tokens", -1),
        ("peak_memory_mb", -1.0), ("cpu_time_seconds", -1.0),
    ],
)  # fmt: skip
async def test_check_constraints_reject_out_of_range_rows(
    connection: asyncpg.Connection, column: str, value: object
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await insert(connection, valid_row(**{column: value}))
    assert caught.value.constraint_name.startswith("ck_executions_")
    assert await connection.fetchval("SELECT count(*) FROM executions") == 0


async def test_materialized_views_have_a_unique_index_each(connection: asyncpg.Connection) -> None:
    names = {row[0] for row in await connection.fetch("SELECT matviewname FROM pg_matviews")}
    public = ("tier_performance", "pool_performance", "solution_patterns",
              "tier_performance_all_repos", "pool_performance_all_repos")  # fmt: skip
    parts = {f"{base}_{part}_mv" for base in public for part in ("history", "recent")}
    assert names == {*parts, "solution_patterns_mv"}  # the merge of its parts (0007)
    assert names == {view.name for view in CURRENT_VIEWS}
    # the other names users read are plain views over the parts (revision 0007)
    plain = {row[0] for row in await connection.fetch("SELECT viewname FROM pg_views")}
    assert {f"{base}_mv" for base in public} - {"solution_patterns_mv"} <= plain
    assert {view.name for view in PUBLIC_VIEWS} == {f"{base}_mv" for base in public}
    for view in CURRENT_VIEWS:
        unique = await connection.fetch(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = $1::regclass AND i.indisunique",
            view.name,
        )
        assert [row[0] for row in unique] == [view.unique_index]
        # CONCURRENTLY is refused without a usable unique index: proof that it is one.
        await connection.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view.name}")


async def test_table_columns_and_views_are_commented(connection: asyncpg.Connection) -> None:
    async def table_comment(name: str) -> str | None:
        text: str | None = await connection.fetchval(
            "SELECT obj_description($1::regclass, 'pg_class')", name
        )
        return text

    async def column_comment(table: str, column: str) -> str | None:
        text: str | None = await connection.fetchval(
            "SELECT col_description($1::regclass, attnum) FROM pg_attribute "
            "WHERE attrelid = $1::regclass AND attname = $2",
            table,
            column,
        )
        return text

    assert executions.comment and await table_comment("executions") == executions.comment
    for column in executions.columns:
        assert column.comment, f"schema.py gives {column.name} no comment"
        assert await column_comment("executions", column.name) == column.comment, column.name
    for view in (*CURRENT_VIEWS, *PUBLIC_VIEWS):
        assert view.comment and await table_comment(view.name) == view.comment
        for name, text in view.column_comments.items():
            assert await column_comment(view.name, name) == text, f"{view.name}.{name}"


# --- 3. drift detection and the model -------------------------------------------------------
async def test_alembic_check_detects_drift_but_ignores_foreign_tables(database_url: str) -> None:
    await fetch(database_url, "CREATE TABLE someone_elses_table (id int PRIMARY KEY)")
    assert "No new upgrade operations detected" in ok(await alembic("check", dsn=database_url))

    await fetch(database_url, "DROP INDEX idx_executions_timestamp")
    result = await alembic("check", dsn=database_url)
    assert result.returncode != 0
    assert "idx_executions_timestamp" in result.stdout + result.stderr


def test_model_fields_are_the_table_columns() -> None:
    fields = [*ExecutionRecord.model_fields, "embedding", "uploaded_at"]
    columns = [column.name for column in executions.columns]
    assert sorted(fields) == sorted(columns)
    assert len(set(fields)) == len(fields)


def test_model_fields_are_the_table_columns_in_order() -> None:
    """The first version's 27 columns in its order: the fields, with the embedding before
    metadata, and uploaded_at last; then the columns later revisions added (0010's
    recommendation_id), as ALTER TABLE appends them."""
    fields = [*ExecutionRecord.model_fields]
    fields.insert(fields.index("metadata"), "embedding")
    fields.insert(fields.index("recommendation_id"), "uploaded_at")
    assert fields == [column.name for column in executions.columns]


# --- 4. offline SQL --------------------------------------------------------------------------
async def test_offline_sql_needs_no_server_and_builds_the_schema(empty_database_url: str) -> None:
    sql = ok(await alembic("upgrade", "head", "--sql", dsn=DOWN_SERVER))
    assert "CREATE TABLE executions" in sql
    assert "CREATE EXTENSION IF NOT EXISTS vector" in sql
    assert f"CREATE INDEX {HNSW_INDEX} ON executions USING hnsw" in sql
    for view in CURRENT_VIEWS:
        assert f"CREATE MATERIALIZED VIEW {view.name}" in sql
    # The script is what a DBA would run by hand: it must build the same head schema.
    connection = await asyncpg.connect(empty_database_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()
    await assert_at_head(empty_database_url)
    check = ok(await alembic("check", dsn=empty_database_url))
    assert "No new upgrade operations detected" in check


# --- 5. the Python API -----------------------------------------------------------------------
async def test_python_api_migrates_inside_a_running_loop(empty_database_url: str) -> None:
    url = empty_database_url
    asyncio.get_running_loop()  # we are inside the loop the API must not try to re-enter
    await migrations.upgrade(url)
    await assert_at_head(url)
    await migrations.upgrade(url)  # at head already: a no-op, not an error
    await assert_at_head(url)
    await migrations.downgrade(url, "base")
    await assert_at_base(url)
    await migrations.upgrade(url, migrations.head_revision())
    await assert_at_head(url)


async def test_head_revision_is_what_alembic_heads_prints() -> None:
    heads = ok(await alembic("heads", dsn=DOWN_SERVER)).split()
    assert heads == [migrations.head_revision(), "(head)"]


def test_scripts_are_found_from_a_path_with_a_percent_sign(tmp_path: Path) -> None:
    root = tmp_path / "100%checkout"  # "%c" is invalid ConfigParser interpolation
    skip = shutil.ignore_patterns("__pycache__")
    for folder in ("orb_learning", "alembic"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=skip)
    shutil.copy(REPO_ROOT / "alembic.ini", root)
    code = "from orb_learning import migrations as m; print(m.__file__, m.head_revision())"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    module = str(root / "orb_learning" / "migrations.py")
    assert ok(result).split() == [module, migrations.head_revision()]


# --- 6. revision 0007 (sealed history) on a database with data --------------------------------
async def _catalog(url: str) -> dict[str, Any]:
    """What revision 0006 and 0007 differ by: views, indexes on them, triggers, the
    routine's comment, the tables."""
    rows = await fetch(
        url,
        """SELECT
             (SELECT array_agg(matviewname ORDER BY matviewname) FROM pg_matviews) AS matviews,
             (SELECT array_agg(viewname ORDER BY viewname) FROM pg_views
              WHERE schemaname = 'public') AS views,
             (SELECT array_agg(indexdef ORDER BY indexdef) FROM pg_indexes i
              JOIN pg_matviews m ON m.matviewname = i.tablename) AS view_indexes,
             (SELECT array_agg(tgname ORDER BY tgname) FROM pg_trigger
              WHERE tgrelid = 'executions'::regclass AND NOT tgisinternal) AS triggers,
             (SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p
              WHERE proname = 'orb_learning_refresh_views') AS routine,
             (SELECT array_agg(proname ORDER BY proname) FROM pg_proc
              WHERE proname LIKE 'orb\\_learning\\_%') AS functions,
             (SELECT array_agg(tablename ORDER BY tablename) FROM pg_tables
              WHERE schemaname = 'public') AS tables,
             (SELECT array_agg(view_name ORDER BY view_name) FROM view_watermarks) AS watermarks""",
    )
    return dict(rows[0])


async def _tiers(url: str) -> list[list[Any]]:
    """Every row of every view users read (the same names and columns in 0006 and 0007)."""
    rows: list[list[Any]] = []
    for view in PUBLIC_VIEWS:
        found = await fetch(url, f"SELECT * FROM {view.name}")
        rows += [[view.name, *((k, v) for k, v in row.items())] for row in found]
    return sorted(rows, key=repr)


async def test_0007_keeps_the_answers_and_its_downgrade_restores_0006(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await migrations.upgrade(url, "0006")
    connection = await asyncpg.connect(url)
    try:
        now = await connection.fetchval("SELECT now()")
        for day in range(0, 200, 3):
            for hour in (1, 13):
                await insert(
                    connection,
                    valid_row(
                        timestamp=now - timedelta(days=day, hours=hour),
                        success=day % 2 == 0,
                        solution_summary=f"s{day % 5}",
                        duration_seconds=float(day),
                        quality_score=day % 100,
                    ),
                )
        await connection.fetch("SELECT * FROM orb_learning_refresh_views()")
    finally:
        await connection.close()
    at_0006 = await _catalog(url)
    answers = await _tiers(url)
    assert answers

    await migrations.upgrade(url, "0007")
    at_0007 = await _catalog(url)
    assert at_0007["matviews"] == sorted(view.name for view in CURRENT_VIEWS)
    assert {view.name for view in PUBLIC_VIEWS} <= {*at_0007["views"], *at_0007["matviews"]}
    assert len(at_0007["triggers"]) == 4
    assert await _tiers(url) == answers, "the parts hold what the old views held"

    await migrations.downgrade(url, "0006")
    assert await _catalog(url) == at_0006
    assert await _tiers(url) == answers
    await migrations.upgrade(url, "0007")
    assert await _catalog(url) == at_0007
    assert await _tiers(url) == answers


async def test_0008_stores_embeddings_in_half_precision_and_its_downgrade_restores_0007(
    empty_database_url: str,
) -> None:
    """The upgrade keeps every row and rounds each embedding to half precision; search
    still walks the index; the downgrade restores 0007's column type and index."""
    url = empty_database_url
    await migrations.upgrade(url, "0007")
    vectors = np.random.default_rng(8).normal(size=(50, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    connection = await asyncpg.connect(url)
    await init_connection(connection)
    try:
        for vector in vectors:
            await insert(connection, valid_row(embedding=vector))
        index_at_0007 = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", HNSW_INDEX
        )
    finally:
        await connection.close()

    await migrations.upgrade(url, "0008")
    connection = await asyncpg.connect(url)
    await init_connection(connection)
    try:
        rows = await connection.fetch("SELECT embedding FROM executions ORDER BY task_id")
        stored = {r["embedding"].to_numpy().tobytes() for r in rows}
        assert stored == {v.astype(np.float16).tobytes() for v in vectors}
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_seqscan = off")
            lines = await connection.fetch(
                "EXPLAIN SELECT task_id FROM executions ORDER BY embedding <=> $1 LIMIT 5",
                vectors[0],
            )
        plan = "\n".join(line[0] for line in lines)
        assert HNSW_INDEX in plan, plan
    finally:
        await connection.close()

    await migrations.downgrade(url, "0007")
    connection = await asyncpg.connect(url)
    await init_connection(connection)
    try:
        column_type = await connection.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'executions'::regclass AND attname = 'embedding'"
        )
        assert column_type == "vector(384)"
        index = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", HNSW_INDEX
        )
        assert index == index_at_0007
        assert await connection.fetchval("SELECT count(*) FROM executions") == len(vectors)
    finally:
        await connection.close()
