"""Secrets never reach the table, the embedding, the archives or a reader: every path that
stores text (the API, feedback, dead letters, telemetry, the DuckDB import) redacts first,
on a real server with the real model."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from orb_learning import (
    DeadLetter,
    ExecutionRecord,
    FeedbackRecord,
    LearningDatabase,
    SentenceTransformerEmbedder,
    TelemetryCapture,
)
from orb_learning.importer import import_duckdb
from tests.factories import as_stored
from tests.test_import_duckdb import source_rows, write_duckdb
from tests.test_redaction import AWS_KEY_ID, GITHUB, JWT, PEM

SECRETS = [AWS_KEY_ID, GITHUB, JWT, "hunter2-Passw0rd", PEM.splitlines()[1]]
BEARER = f"Authorization: Bearer {GITHUB}"
URL = "https://deploy:hunter2-Passw0rd@git.example.com/acme/api.git"


def secret_record(**overrides: Any) -> ExecutionRecord:
    """A record with a secret in every text field and nested in its metadata."""
    fields: dict[str, Any] = {
        "task_type": f"deploy {AWS_KEY_ID}",
        "task_description": f"Fix the failing deploy: {BEARER} was rejected by {URL}",
        "repo": URL,
        "model_tier": f"large {GITHUB}",
        "pool_type": f"pool {JWT}",
        "swarm_topology": f"mesh {AWS_KEY_ID}",
        "routing_confidence": 0.9,
        "success": False,
        "duration_seconds": 3.0,
        "cost_estimate": 0.1,
        "actual_cost": 0.2,
        "error_message": f"Traceback ...\nbotocore: key {AWS_KEY_ID} denied\n{PEM}",
        "solution_summary": f"rotate {GITHUB}",
        "metadata": {"env": {"TOKEN": GITHUB, "urls": [URL]}, "note": "fine"},
        "timestamp": datetime.now(UTC) - timedelta(days=1),
    }
    return ExecutionRecord(**{**fields, **overrides})


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret[:12]}... stored"


async def stored_text(connection: asyncpg.Connection, table: str = "executions") -> str:
    rows = await connection.fetch(f"SELECT row_to_json(t)::text AS j FROM {table} t")
    return "\n".join(row["j"] for row in rows)


async def stored_embedding(connection: asyncpg.Connection, task_id: uuid.UUID) -> np.ndarray:
    vector = await connection.fetchval(
        "SELECT embedding FROM executions WHERE task_id = $1", task_id
    )
    return np.asarray(vector.to_numpy())


async def test_every_text_field_is_redacted_and_the_embedding_follows(
    db: LearningDatabase, connection: asyncpg.Connection, embedder: SentenceTransformerEmbedder
) -> None:
    record, clean = secret_record(), secret_record(task_description="Split the parser module")
    batch = [record, clean.model_copy(update={"task_id": uuid.uuid4()})]
    naive = embedder.encode([r.task_description for r in batch])  # of the original text
    assert await db.store_executions(batch, embeddings=naive) == 2
    single = secret_record(task_id=uuid.uuid4())
    await db.store_execution(single, embedding=naive[0])
    assert_clean(await stored_text(connection))
    row = await connection.fetchrow("SELECT * FROM executions WHERE task_id = $1", record.task_id)
    assert (
        "[REDACTED:" in row["task_description"]
        and "Authorization: Bearer " in row["task_description"]
    )
    assert row["repo"].startswith("https://deploy:[REDACTED:") and "@git.example.com" in row["repo"]
    redacted_text = row["task_description"]
    assert json.loads(json.dumps(row["metadata"]))["redactions"] >= 10
    expected = as_stored(embedder.encode([redacted_text])[0])
    for task_id in (record.task_id, single.task_id):  # recomputed, not the vector passed
        assert np.array_equal(await stored_embedding(connection, task_id), expected)
    found = await db.find_similar_executions(record.task_description, days_back=None)
    assert found and found[0]["similarity"] == pytest.approx(1.0, abs=1e-3)


async def test_feedback_and_dead_letters_are_redacted(
    db: LearningDatabase, connection: asyncpg.Connection
) -> None:
    record = secret_record(task_description="Rotate the deploy key")
    await db.store_execution(record)
    comment = f"it printed {BEARER} in the log, see {URL}"
    await db.store_feedback(
        FeedbackRecord(
            task_id=record.task_id, rating=2, feedback_type="thumbs_down", comment=comment
        )
    )
    event = {"event_type": "x", "data": {"routing": {"token": GITHUB}, "error": PEM}}
    await db.store_dead_letters([DeadLetter(record.task_id, f"bad {AWS_KEY_ID}", [event])])
    assert_clean(await stored_text(connection, "feedback"))
    assert_clean(await stored_text(connection, "telemetry_dead_letters"))
    assert "[REDACTED:" in await connection.fetchval("SELECT comment FROM feedback")


async def test_redaction_can_be_turned_off_or_replaced(
    database_url: str, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mine(text: str) -> str:
        return text.replace("acme", "[REDACTED:customer]")

    monkeypatch.setenv("ORB_LEARNING_REDACT_SECRETS", "0")
    async with LearningDatabase(database_url, embedder=embedder) as off:
        await off.store_execution(secret_record(task_id=uuid.UUID(int=1)))
    async with LearningDatabase(database_url, embedder=embedder, redact=mine) as custom:
        await custom.store_execution(secret_record(task_id=uuid.UUID(int=2)))
        async with custom.connection() as connection:
            rows = {
                r["task_id"].int: r
                for r in await connection.fetch("SELECT task_id, repo, metadata FROM executions")
            }
    assert rows[1]["repo"] == URL and "redactions" not in rows[1]["metadata"]
    assert rows[2]["repo"] == URL.replace("acme", "[REDACTED:customer]")
    assert rows[2]["metadata"]["redactions"] == 3  # repo, description and metadata URL


async def test_telemetry_capture_stores_no_secret(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    capture = TelemetryCapture(None, db, batch_timeout=0.1, spool_path=tmp_path / "s.jsonl")
    await capture.initialize()
    task_id = str(uuid.uuid4())
    await capture.capture_routing_decision({
        "task_id": task_id,
        "routing": {"tier": "large", "confidence": 0.8, "model": f"m {GITHUB}"},
        "task_data": {"description": f"Deploy with {BEARER}", "repo": URL,
                      "metadata": {"aws": AWS_KEY_ID}},
    })  # fmt: skip
    await capture.capture_execution_outcome({
        "task_id": task_id, "success": False, "duration_seconds": 2.0,
        "error": f"denied for {AWS_KEY_ID}\n{PEM}",
    })  # fmt: skip
    await capture.capture_feedback({"task_id": task_id, "rating": 1, "comment": f"see {JWT}"})
    assert await capture.flush(timeout=60)
    await capture.shutdown()
    assert await connection.fetchval("SELECT count(*) FROM executions") == 1
    assert await connection.fetchval("SELECT count(*) FROM feedback") == 1
    for table in ("executions", "feedback", "telemetry_dead_letters"):
        assert_clean(await stored_text(connection, table))


async def test_a_duckdb_import_and_its_archive_hold_no_secret(
    db: LearningDatabase, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    rows = source_rows()[:6]
    for row in rows:
        row["task_description"] += f" ({BEARER})"
        row["error_message"] = f"key {AWS_KEY_ID} refused"
        row["metadata"] = {"url": URL}
    summary = await import_duckdb(db, write_duckdb(tmp_path / "v1.duckdb", rows))
    assert summary.imported == 6
    assert_clean(await stored_text(connection))
    archive = tmp_path / "archive"
    result = await db.cleanup_old_executions(days_to_keep=0, archive_path=archive, reclaim=False)
    assert result["archived_count"] == 6
    import pyarrow.parquet as pq

    for path in archive.rglob("*.parquet"):
        assert_clean(json.dumps(pq.read_table(path).drop(["embedding"]).to_pylist(), default=str))
