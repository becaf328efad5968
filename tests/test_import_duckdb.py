"""``import_duckdb``: DuckDB files in the first version's shapes, moved into PostgreSQL and
checked row by row, field by field, on a real server with the real model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import numpy as np
import pytest

from orb_learning import LearningDatabase, SentenceTransformerEmbedder
from orb_learning._store import RECORD_COLUMNS
from orb_learning.importer import ImportSourceError, import_duckdb
from tests.factories import as_stored

# The first version's DDL (first-version-quick-start.md, "Executions Table").
QUICK_START_DDL = """
CREATE TABLE executions (
    task_id UUID PRIMARY KEY, timestamp TIMESTAMP NOT NULL, task_type VARCHAR NOT NULL,
    task_description TEXT NOT NULL, repo VARCHAR NOT NULL, file_count INT NOT NULL,
    estimated_tokens INT NOT NULL, model_tier VARCHAR NOT NULL, pool_type VARCHAR NOT NULL,
    swarm_topology VARCHAR, routing_confidence FLOAT NOT NULL, complexity_score INT NOT NULL,
    success BOOLEAN NOT NULL, duration_seconds FLOAT NOT NULL, quality_score INT,
    cost_estimate FLOAT NOT NULL, actual_cost FLOAT NOT NULL, error_type VARCHAR,
    error_message TEXT, user_accepted BOOLEAN, user_rating INT, peak_memory_mb FLOAT,
    cpu_time_seconds FLOAT, solution_summary TEXT, embedding FLOAT[384], metadata JSON,
    uploaded_at TIMESTAMP DEFAULT NOW())"""
# scripts/init_learning_db.py's variant: FLOAT[] (768-dim in the real file), no topology,
# no solution summary, no metadata, no resources or user columns.
VARIANT_COLUMNS = [
    c for c in RECORD_COLUMNS
    if c not in ("recommendation_id", "swarm_topology", "solution_summary", "metadata",
                 "peak_memory_mb", "cpu_time_seconds", "user_accepted", "user_rating")
]  # fmt: skip
VARIANT_DDL = """
CREATE TABLE executions (
    task_id UUID PRIMARY KEY, timestamp TIMESTAMP NOT NULL, task_type VARCHAR NOT NULL,
    task_description TEXT NOT NULL, repo VARCHAR NOT NULL, file_count INT NOT NULL,
    estimated_tokens INT NOT NULL, model_tier VARCHAR NOT NULL, pool_type VARCHAR NOT NULL,
    routing_confidence FLOAT NOT NULL, complexity_score INT NOT NULL, success BOOLEAN NOT NULL,
    duration_seconds FLOAT NOT NULL, quality_score INT, cost_estimate FLOAT NOT NULL,
    actual_cost FLOAT NOT NULL, error_type VARCHAR, error_message TEXT, embedding FLOAT[])"""
DEFAULTS: dict[str, Any] = {
    "swarm_topology": None, "solution_summary": None, "metadata": {}, "peak_memory_mb": None,
    "cpu_time_seconds": None, "user_accepted": None, "user_rating": None,
}  # fmt: skip
DESCRIPTIONS = [
    "Optimize slow queries in the payment service",
    "Write unit tests for the CLI argument parser",
    "Fix a race condition in the worker pool scheduler",
    "Document the public API of the caching layer",
    "Add retries with backoff to the REST API client",
    "Refactor the authentication middleware to remove duplicated code",
]
ERROR_TYPES = [None, "rate_limit", "validation_error", "network_error", "timeout", None]
INVALID = {  # field -> bad value: one invalid row each
    "routing_confidence": 1.5,
    "task_description": "bad\x00text",
    "duration_seconds": -3.0,
    "user_rating": 9,
}
BASE = datetime(2025, 11, 3, 14, 30, 15, 250000)  # naive, as the first version wrote


def hash_embedding(text: str, dimension: int = 384) -> list[float]:
    """The first version's synthetic embedding: SHA-256 bytes, centred, L2-normalised."""
    raw = b"".join(
        hashlib.sha256(f"{text}{i}".encode()).digest() for i in range(dimension // 32 + 1)
    )
    vector = (np.frombuffer(raw[:dimension], dtype=np.uint8).astype(np.float32) - 128) / 128
    return (vector / np.linalg.norm(vector)).tolist()


def source_rows() -> list[dict[str, Any]]:
    """Valid rows of every kind, then one invalid row per INVALID field."""
    rows = []
    for i, description in enumerate(DESCRIPTIONS):
        success = ERROR_TYPES[i] is None
        rows.append(
            {
                "task_id": uuid.UUID(int=i + 1),
                "timestamp": BASE - timedelta(days=3 * i, minutes=i),
                "task_type": ["optimize", "test", "bugfix", "docs", "feature", "refactor"][i],
                "task_description": description,
                "repo": "mahavishnu" if i % 2 else "session-buddy",
                "file_count": i + 1,
                "estimated_tokens": 1000 * (i + 1),
                "model_tier": ["small", "medium", "large"][i % 3],
                "pool_type": "mahavishnu",
                "swarm_topology": [None, "hierarchical", "flat", "dynamic"][i % 4],
                "routing_confidence": [0.85, 0.5, 0.333, 1.0, 0.0, 0.72][i],
                "complexity_score": i + 2,  # the first version's test data used 1-10
                "success": success,
                "duration_seconds": [45.2, 3.25, 120.0, 0.0, 7.7, 12.125][i],
                "quality_score": None if i == 2 else 60 + i,
                "cost_estimate": [0.003, 0.0, 1.5, 0.25, 0.01, 0.125][i],
                "actual_cost": [0.0032, 0.001, 1.75, 0.0, 0.02, 0.5][i],
                "error_type": ERROR_TYPES[i],
                "error_message": None if success else f"{ERROR_TYPES[i]} while running",
                "user_accepted": [None, True, False, None, None, True][i],
                "user_rating": [None, 5, 1, None, 3, 4][i],
                "peak_memory_mb": None if i == 1 else 512.5 + i,
                "cpu_time_seconds": None if i == 3 else 1.5 * i,
                "solution_summary": None if i == 4 else f"Solution for {description[:12]}",
                "metadata": None if i % 3 == 0 else {"test": True, "n": i, "tags": ["a", "é"]},
            }
        )
    for j, (name, value) in enumerate(INVALID.items()):
        rows.append({**rows[j], "task_id": uuid.UUID(int=100 + j), name: value})
    return rows


FIRST_VERSION_COLUMNS = [c for c in RECORD_COLUMNS if c != "recommendation_id"]  # 0010's


def write_duckdb(
    path: Path, rows: list[dict[str, Any]], *, ddl: str = QUICK_START_DDL,
    columns: list[str] | None = None, dimension: int = 384,
) -> Path:  # fmt: skip
    """A DuckDB file holding ``rows`` in ``columns`` (default: all), with hash embeddings
    of ``dimension`` (every third one NULL)."""
    columns = list(columns or FIRST_VERSION_COLUMNS)
    connection = duckdb.connect(str(path))
    connection.execute(ddl)
    names = ", ".join(f'"{name}"' for name in [*columns, "embedding"])
    placeholders = ", ".join("?" for _ in range(len(columns) + 1))
    for i, row in enumerate(rows):
        values = [
            json.dumps(row[c]) if c == "metadata" and row[c] is not None else row[c]
            for c in columns
        ]
        embedding = None if i % 3 == 2 else hash_embedding(row["task_description"], dimension)
        connection.execute(
            f"INSERT INTO executions ({names}) VALUES ({placeholders})", [*values, embedding]
        )
    connection.close()
    return path


def expected_row(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """What PostgreSQL must hold for a valid source row."""
    want = {c: row[c] for c in columns}
    for name, default in DEFAULTS.items():
        if name not in columns:
            want[name] = default
    want["timestamp"] = row["timestamp"].replace(tzinfo=UTC)
    want["metadata"] = dict(want["metadata"] or {})
    mapped = {"rate_limit": "unknown", "validation_error": "validation",
              "network_error": "unknown", "timeout": "timeout", None: None}  # fmt: skip
    want["error_type"] = mapped[row["error_type"]]
    if row["error_type"] not in (None, "timeout"):
        want["metadata"]["original_error_type"] = row["error_type"]
    return want


async def check_table(
    connection: asyncpg.Connection,
    rows: list[dict[str, Any]],
    columns: list[str],
    embedder: SentenceTransformerEmbedder,
) -> None:
    """Every valid row is stored with every field as expected and the model's embedding of
    its description; no invalid row is stored."""
    valid = rows[: len(DESCRIPTIONS)]
    stored = {r["task_id"]: r for r in await connection.fetch("SELECT * FROM executions")}
    assert set(stored) == {r["task_id"] for r in valid}
    vectors = embedder.encode([r["task_description"] for r in valid])
    for row, vector in zip(valid, vectors, strict=True):
        got = stored[row["task_id"]]
        for name, value in expected_row(row, columns).items():
            assert got[name] == value, (row["task_id"], name, got[name], value)
        assert got["timestamp"].utcoffset() == timedelta(0)
        embedding = got["embedding"].to_numpy()
        assert embedding.shape == (384,)
        assert np.array_equal(embedding, as_stored(vector))


async def test_quick_start_file_is_imported_row_by_row(
    db: LearningDatabase,
    connection: asyncpg.Connection,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    rows = source_rows()
    path = write_duckdb(tmp_path / "learning.db", rows)
    seen: list[tuple[int, int]] = []
    summary = await import_duckdb(db, path, batch_size=4, progress=lambda *a: seen.append(a))

    assert (summary.read, summary.imported, summary.updated) == (10, 6, 0)
    assert seen[-1] == (10, 10) and len(seen) == 3
    assert summary.embeddings_computed == 6 and summary.embeddings_kept == 0
    skipped = {s.task_id: s.reason for s in summary.skipped}
    assert list(skipped) == [str(uuid.UUID(int=100 + j)) for j in range(len(INVALID))]
    for reason, field in zip(skipped.values(), INVALID, strict=True):
        assert reason.startswith(f"{field}:"), reason
    assert "NUL" in skipped[str(uuid.UUID(int=101))]
    assert summary.error_types_mapped == {
        "rate_limit": 1,
        "validation_error": 1,
        "network_error": 1,
    }
    assert summary.defaulted_columns == [] and summary.ignored_columns == []
    await check_table(connection, rows, FIRST_VERSION_COLUMNS, embedder)

    # Imported rows are found like new ones (the stored hash vectors were not kept).
    for row in rows[:3]:
        similar = await db.find_similar_executions(row["task_description"], days_back=None)
        assert similar[0]["task_id"] == row["task_id"]
        assert similar[0]["similarity"] == pytest.approx(1.0, abs=1e-4)


async def test_variant_with_768_dim_embeddings_and_missing_columns(
    db: LearningDatabase,
    connection: asyncpg.Connection,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    rows = [r for r in source_rows() if r["user_rating"] != 9]  # no user_rating column here
    path = write_duckdb(
        tmp_path / "v.duckdb", rows, ddl=VARIANT_DDL, columns=VARIANT_COLUMNS, dimension=768
    )
    summary = await import_duckdb(db, path, keep_embeddings=True)  # 768-dim: recomputed

    assert (summary.read, summary.imported, len(summary.skipped)) == (9, 6, 3)
    assert summary.embeddings_computed == 6
    assert set(summary.defaulted_columns) == set(DEFAULTS)
    await check_table(connection, rows, VARIANT_COLUMNS, embedder)


async def test_running_twice_imports_nothing_twice(
    db: LearningDatabase,
    connection: asyncpg.Connection,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    rows = source_rows()
    path = write_duckdb(tmp_path / "learning.db", rows)
    first = await import_duckdb(db, path, batch_size=3)
    query = "SELECT * FROM executions ORDER BY task_id"

    async def table() -> list[dict[str, Any]]:
        rows = await connection.fetch(query)
        return [{k: v for k, v in r.items() if k != "uploaded_at"} for r in rows]

    before = await table()
    second = await import_duckdb(db, path, batch_size=5)
    after = await table()

    assert (second.imported, second.updated) == (0, first.imported)
    assert [s.task_id for s in second.skipped] == [s.task_id for s in first.skipped]
    assert after == before
    await check_table(connection, rows, FIRST_VERSION_COLUMNS, embedder)


async def test_keep_embeddings_keeps_384_dim_vectors_as_stored(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    rows = source_rows()[: len(DESCRIPTIONS)]
    path = write_duckdb(tmp_path / "learning.db", rows)
    summary = await import_duckdb(db, path, keep_embeddings=True)

    assert (summary.embeddings_kept, summary.embeddings_computed) == (4, 2)  # 2 NULL
    for i, row in enumerate(rows):
        stored = await connection.fetchval(
            "SELECT embedding FROM executions WHERE task_id = $1", row["task_id"]
        )
        hashed = np.asarray(hash_embedding(row["task_description"]), dtype=np.float32)
        assert np.array_equal(stored.to_numpy(), as_stored(hashed)) == (i % 3 != 2)


async def test_timestamptz_variable_schema_and_bad_metadata(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "tz.duckdb"
    duck = duckdb.connect(str(path))
    duck.execute(
        "CREATE TABLE executions (task_id VARCHAR, timestamp TIMESTAMPTZ, task_type VARCHAR, "
        "task_description VARCHAR, repo VARCHAR, model_tier VARCHAR, pool_type VARCHAR, "
        "routing_confidence DOUBLE, success BOOLEAN, duration_seconds DOUBLE, "
        "cost_estimate DOUBLE, actual_cost DOUBLE, metadata JSON, predicted_success DOUBLE)"
    )
    ok, bad, broken = (str(uuid.UUID(int=n)) for n in (1, 2, 3))
    duck.execute("SET TimeZone = 'Europe/Paris'")
    for task_id, metadata in ((ok, '{"k": [1, 2]}'), (bad, "[1, 2]"), (broken, None)):
        duck.execute(
            "INSERT INTO executions VALUES (?, '2025-06-01 12:00:00+02', 'test', 'Do it', "
            "'r', 'small', 'local', 0.123456789, true, 1.0, 0.0, 0.0, ?, 0.5)",
            [task_id if task_id != broken else "not-a-uuid", metadata],
        )
    duck.close()
    summary = await import_duckdb(db, path)

    assert summary.imported == 1 and summary.ignored_columns == ["predicted_success"]
    assert [s.task_id for s in summary.skipped] == [bad, "not-a-uuid"]
    assert "JSON object" in summary.skipped[0].reason
    row = await connection.fetchrow("SELECT * FROM executions")
    assert row["timestamp"] == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    assert row["routing_confidence"] == 0.123456789  # DOUBLE: kept exactly
    assert (row["metadata"], row["file_count"], row["complexity_score"]) == ({"k": [1, 2]}, 0, 50)


async def test_unreadable_sources_are_refused(db: LearningDatabase, tmp_path: Path) -> None:
    with pytest.raises(ImportSourceError, match="no such DuckDB file"):
        await import_duckdb(db, tmp_path / "missing.db")
    (tmp_path / "text.db").write_text("not a database")
    with pytest.raises(ImportSourceError, match="cannot open"):
        await import_duckdb(db, tmp_path / "text.db")
    duck = duckdb.connect(str(tmp_path / "other.db"))
    duck.execute("CREATE TABLE things (x INT)")
    duck.execute("CREATE TABLE IF NOT EXISTS executions (task_type VARCHAR, repo VARCHAR)")
    duck.close()
    with pytest.raises(ImportSourceError, match="lacks required columns"):
        await import_duckdb(db, tmp_path / "other.db")
    with pytest.raises(ValueError, match="batch_size"):
        await import_duckdb(db, tmp_path / "other.db", batch_size=0)


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    command = [sys.executable, "-m", "orb_learning.cli", "--dsn", url, "import-duckdb", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


async def test_cli_end_to_end(
    database_url: str, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    path = write_duckdb(tmp_path / "file.duckdb", source_rows())
    result = run_cli(database_url, str(path), "--batch-size", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in ("read", "imported (new)", "updated (already present)", "skipped (invalid)"):
        assert line in out
    assert "routing_confidence:" in out and str(uuid.UUID(int=100)) in out
    assert await connection.fetchval("SELECT count(*) FROM executions") == 6

    again = run_cli(database_url, str(path), "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["read"], summary["imported"], summary["updated"]) == (10, 0, 6)
    assert summary["skipped_count"] == 4 and summary["skipped"][0]["task_id"]
    assert await connection.fetchval("SELECT count(*) FROM executions") == 6

    missing = run_cli(database_url, str(tmp_path / "nope.duckdb"))
    assert missing.returncode == 1 and "no such DuckDB file" in missing.stderr
