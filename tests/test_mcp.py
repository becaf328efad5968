"""`orb-learning mcp`, driven as an agent's MCP client drives it: the SDK's client over stdio
against a real server subprocess (one for the module) on a migrated database seeded through
the library, and over streamable HTTP; a database that goes down and comes back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import numpy as np
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult

from orb_learning import ExecutionRecord, LearningDatabase, migrations, routing, rows
from orb_learning._catalog import CURRENT_VIEWS
from orb_learning.cli.agents import host_and_port
from orb_learning.embeddings import Embedder
from orb_learning.mcp_tools import outputs
from tests.conftest import fresh_database

READERS = {"find_similar_executions", "tier_performance", "pool_performance",
           "solution_patterns", "execution_statistics", "performance_metrics",
           "database_status"}  # fmt: skip
WRITERS = {"recommend_route", "submit_feedback"}
CALL_TIMEOUT = 120
NOW = datetime.now(UTC)


def execution(n: int, minutes_ago: float, description: str, **fields: Any) -> ExecutionRecord:
    values: dict[str, Any] = {
        "task_id": uuid.UUID(int=n + 1),
        "timestamp": NOW - timedelta(minutes=minutes_ago),
        "task_type": "optimize",
        "task_description": description,
        "repo": "acme/api",
        "model_tier": "small",
        "pool_type": "local",
        "routing_confidence": 0.8,
        "success": True,
        "duration_seconds": 10.0 * (n + 1),
        "cost_estimate": 0.01 * (n + 1),
        "actual_cost": 0.012 * (n + 1),
        "quality_score": 70 + n,
        "solution_summary": "Add a composite index",
    }
    values.update(fields)
    return ExecutionRecord(**values)


HOUR, DAY = 60, 24 * 60
RECORDS = [
    execution(0, 10, "Optimize slow queries in the caching layer", peak_memory_mb=256.0),
    execution(1, 20, "Optimize slow database queries of the report page", model_tier="large",
              pool_type="gpu", peak_memory_mb=512.0),
    execution(2, 40, "Fix a race condition in the message bus", model_tier="large",
              pool_type="gpu", repo="acme/web", task_type="bugfix",
              solution_summary="Guard the shared state with a lock"),
    execution(3, 3 * HOUR, "Write unit tests for the CLI argument parser", repo="acme/web",
              task_type="test", solution_summary=None),
    execution(4, 9 * HOUR, "Document the public API of the payment service",
              repo="acme/docs", task_type="docs", quality_score=None),
    execution(5, 20 * HOUR, "Add pagination to the REST API client", model_tier="medium",
              pool_type="gpu", task_type="feature", success=False, error_type="timeout",
              error_message="timed out", quality_score=None, solution_summary=None),
    execution(6, 3 * DAY, "Rotate secrets used by the worker pool scheduler",
              task_type="security", success=False, quality_score=None),
    execution(7, 4 * DAY, "Speed up the search index under load", model_tier="large"),
    execution(8, 40 * DAY, "Reduce memory use of the websocket server", pool_type="gpu"),
]  # fmt: skip


def within(minutes: float) -> list[ExecutionRecord]:
    return [r for r in RECORDS if (NOW - r.timestamp) < timedelta(minutes=minutes)]


def child_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}


def command(url: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "orb_learning.cli", "--dsn", url, "mcp", *options]


@asynccontextmanager
async def stdio(url: str, log: Path, *options: str) -> AsyncIterator[Any]:
    """The server as a stdio subprocess (a transport for :class:`Client`), its stderr kept
    in ``log``."""
    executable, *args = command(url, *options)
    parameters = StdioServerParameters(command=executable, args=args, env=child_environment())
    with log.open("a") as errlog:
        async with stdio_client(parameters, errlog=errlog) as streams:
            yield streams


@dataclass
class Session:
    """A client held open by a task of its own: anyio's cancel scopes must be entered and
    left by one task, and a fixture's setup and teardown are two."""

    server: Any
    client: Client | None = None

    async def __aenter__(self) -> Client:
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._hold(ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({waiting, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            waiting.cancel()
            self._task.result()
        assert self.client is not None
        return self.client

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        await self._task

    async def _hold(self, ready: asyncio.Event) -> None:
        async with Client(self.server) as client:
            self.client = client
            ready.set()
            await self._stop.wait()


async def call(client: Client, name: str, arguments: dict[str, Any]) -> CallToolResult:
    return await asyncio.wait_for(client.call_tool(name, arguments), CALL_TIMEOUT)


async def structured(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A call that must succeed: its structured content (also sent as JSON text)."""
    result = await call(client, name, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


async def error_line(client: Client, name: str, arguments: dict[str, Any]) -> str:
    """A call that must fail: its one-line message."""
    result = await call(client, name, arguments)
    assert result.is_error
    assert len(result.content) == 1
    text: str = result.content[0].text  # type: ignore[union-attr]
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith(f"Error executing tool {name}: ")
    return text


# -- the module's database and server ------------------------------------------------------


@pytest.fixture(scope="module")
async def seeded_url(server_url: str, template_url: str, embedder: Embedder) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        async with LearningDatabase(url, embedder=embedder) as db:
            await db.store_executions(RECORDS)
            await db.refresh_views()
        yield url


@pytest.fixture(scope="module")
async def db(seeded_url: str, embedder: Embedder) -> AsyncIterator[LearningDatabase]:
    async with LearningDatabase(seeded_url, embedder=embedder) as database:
        yield database


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "server.log"


@pytest.fixture(scope="module")
async def client(seeded_url: str, server_log: Path) -> AsyncIterator[Client]:
    async with Session(stdio(seeded_url, server_log)) as session:
        yield session


async def count(url: str, sql: str, *args: Any) -> int:
    connection = await asyncpg.connect(url)
    try:
        value: int = await connection.fetchval(sql, *args)
        return value
    finally:
        await connection.close()


# -- tools and their schemas ---------------------------------------------------------------


async def test_lists_the_tools_with_their_hints_and_schemas(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == READERS | WRITERS
    for name, tool in tools.items():
        hints = tool.annotations
        assert hints is not None and hints.read_only_hint is (name in READERS), name
        assert hints.destructive_hint is False
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.description and tool.input_schema["type"] == "object"
    similar = tools["find_similar_executions"].input_schema
    assert list(similar["properties"]) == ["task_description", "repo", "limit", "days_back",
                                           "threshold"]  # fmt: skip
    assert similar["required"] == ["task_description"]
    assert "log" in tools["recommend_route"].input_schema["properties"]
    assert tools["execution_statistics"].input_schema["properties"]["time_range"]["enum"] == [
        "1h", "24h", "7d", "30d", "90d"
    ]  # fmt: skip


def test_output_models_mirror_the_library() -> None:
    pairs = [
        (outputs.SimilarExecution, get_type_hints(rows.SimilarExecution)),
        (outputs.TierRow, get_type_hints(rows.TierPerformance)),
        (outputs.PoolRow, get_type_hints(rows.PoolPerformance)),
        (outputs.PatternRow, get_type_hints(rows.SolutionPattern)),
        (outputs.Evidence, {f.name: f for f in fields(routing.Evidence)}),
        (outputs.RouteOption, {f.name: f for f in fields(routing.RouteOption)}),
    ]
    for model, library in pairs:
        assert list(model.model_fields) == list(library), model
    recommendation = {f.name for f in fields(routing.RouteRecommendation)}
    assert set(outputs.RouteRecommendation.model_fields) == recommendation | {"logged"}


# -- before a task -------------------------------------------------------------------------


async def test_find_similar_executions(client: Client) -> None:
    found = await structured(
        client,
        "find_similar_executions",
        {"task_description": "Optimize slow queries in the caching layer", "threshold": 0.3,
         "days_back": None, "limit": 3},
    )  # fmt: skip
    executions = found["executions"]
    assert 1 <= len(executions) <= 3
    first = executions[0]
    assert first["task_id"] == str(RECORDS[0].task_id) and first["similarity"] > 0.99
    assert set(first) == set(outputs.SimilarExecution.model_fields)
    assert first["peak_memory_mb"] == 256.0 and first["solution_summary"] == "Add a composite index"
    similarities = [e["similarity"] for e in executions]
    assert similarities == sorted(similarities, reverse=True) and min(similarities) >= 0.3
    scoped = await structured(
        client,
        "find_similar_executions",
        {"task_description": "Optimize slow queries", "repo": "acme/docs", "threshold": -1},
    )
    assert {e["repo"] for e in scoped["executions"]} == {"acme/docs"}


async def test_recommend_route_logs_unless_told_not_to(client: Client, seeded_url: str) -> None:
    arguments = {
        "task_description": "Optimize slow queries in the search index",
        "task_type": "optimize",
        "candidates": [{"model_tier": "small", "pool_type": "local"},
                       {"model_tier": "large", "pool_type": "gpu"}],
    }  # fmt: skip
    made = await structured(client, "recommend_route", arguments)
    assert made["logged"] is True and made["objective"] == "success"
    assert {(o["model_tier"], o["pool_type"]) for o in made["options"]} == {
        ("small", "local"), ("large", "gpu")
    }  # fmt: skip
    assert made["chosen"] in made["options"] and made["reason"]
    assert made["similar"] and "similarity" in made["similar"][0]
    logged = "SELECT count(*) FROM route_recommendations WHERE recommendation_id = $1"
    assert await count(seeded_url, logged, uuid.UUID(made["recommendation_id"])) == 1
    quiet = await structured(client, "recommend_route", {**arguments, "log": False})
    assert quiet["logged"] is False
    assert await count(seeded_url, logged, uuid.UUID(quiet["recommendation_id"])) == 0


# -- analytics -----------------------------------------------------------------------------


async def test_analytics_tools_answer_as_the_library(client: Client, db: LearningDatabase) -> None:
    def dumped(model: type[Any], key: str, found: list[Any]) -> dict[str, Any]:
        return dict(model.model_validate({key: found}).model_dump(mode="json"))

    tiers = await structured(client, "tier_performance", {"days_back": 365})
    expected = dumped(outputs.TierPerformance, "tiers", await db.get_tier_performance(None, 365))
    assert tiers == expected and sum(t["total_executions"] for t in tiers["tiers"]) == len(RECORDS)
    pools = await structured(client, "pool_performance", {"repo": "acme/api", "days_back": 2})
    expected = dumped(
        outputs.PoolPerformance, "pools", await db.get_pool_performance("acme/api", 2)
    )
    assert pools == expected and pools["pools"]
    patterns = await structured(client, "solution_patterns", {"min_usage": 2, "fresh": False})
    assert [p["solution_summary"] for p in patterns["patterns"]] == ["Add a composite index"]
    assert patterns["patterns"][0]["usage_count"] == 6


def percentiles(values: list[float]) -> list[float]:
    return [float(np.percentile(values, q)) for q in (50, 95, 99)]


async def test_execution_statistics(client: Client) -> None:
    stats = await structured(client, "execution_statistics", {"time_range": "24h"})
    day = within(DAY)
    assert stats["time_range"] == "24h" and stats["bucket_seconds"] == 3600
    total = stats["total"]
    assert total["executions"] == len(day) == 6
    assert total["successful"] == 5 and total["success_rate"] == pytest.approx(5 / 6)
    assert total["total_cost"] == pytest.approx(sum(r.actual_cost for r in day))
    assert total["avg_duration_seconds"] == pytest.approx(
        np.mean([r.duration_seconds for r in day])
    )
    assert [(g["name"], g["executions"]) for g in stats["by_model_tier"]] == [
        ("small", 3), ("large", 2), ("medium", 1)
    ]  # fmt: skip
    assert [g["name"] for g in stats["top_repositories"]] == ["acme/api", "acme/web", "acme/docs"]
    assert {g["name"]: g["executions"] for g in stats["by_pool_type"]} == {"local": 3, "gpu": 3}
    assert sum(g["executions"] for g in stats["by_task_type"]) == 6
    series = stats["time_series"]
    assert sum(b["executions"] for b in series) == 6
    assert [b["start"] for b in series] == sorted(b["start"] for b in series)
    hour = await structured(client, "execution_statistics", {"time_range": "1h"})
    assert hour["total"]["executions"] == len(within(HOUR)) == 3


async def test_performance_metrics(client: Client) -> None:
    metrics = await structured(client, "performance_metrics", {"time_range": "7d"})
    week = within(7 * DAY)
    durations = [r.duration_seconds for r in week]
    assert metrics["executions"] == len(week) == 8
    duration = metrics["duration"]
    assert [duration["p50"], duration["p95"], duration["p99"]] == pytest.approx(
        percentiles(durations)
    )
    assert duration["avg"] == pytest.approx(np.mean(durations))
    savings = np.mean([r.cost_estimate - r.actual_cost for r in week])
    assert metrics["cost"]["avg_savings"] == pytest.approx(savings)
    assert metrics["cost"]["total"] == pytest.approx(sum(r.actual_cost for r in week))
    assert metrics["memory"] == {"avg_mb": 384.0, "p95_mb": pytest.approx(499.2)}
    large = next(t for t in metrics["by_model_tier"] if t["model_tier"] == "large")
    large_durations = [r.duration_seconds for r in week if r.model_tier == "large"]
    assert large["executions"] == 3
    assert [large["duration"][p] for p in ("p50", "p95", "p99")] == pytest.approx(
        percentiles(large_durations)
    )


async def test_database_status(client: Client, seeded_url: str) -> None:
    status = await structured(client, "database_status", {})
    assert status["status"] == "OK", status["warnings"]
    assert status["warnings"] == [] and status["errors"] == []
    database = status["database"]
    assert database["schema_version"] == database["head_version"] == migrations.head_revision()
    assert database["size_mb"] > database["executions_size_mb"] > 0
    assert status["tables"]["executions"] == len(RECORDS)
    feedback = await count(seeded_url, "SELECT count(*) FROM feedback")
    assert status["tables"]["feedback"] == feedback
    executions = status["executions"]
    assert (executions["recent_1h"], executions["daily"], executions["weekly"]) == (3, 6, 8)
    assert status["performance"]["daily_success_rate"] == pytest.approx(5 / 6)
    assert {v["view_name"] for v in status["views"]} == {view.name for view in CURRENT_VIEWS}

    connection = await asyncpg.connect(seeded_url)
    try:
        await connection.execute(
            "INSERT INTO telemetry_dead_letters (task_id, reason, events, first_seen_at) "
            "VALUES (NULL, 'orphan', '[]'::jsonb, now())"
        )
        warned = await structured(client, "database_status", {})
        assert warned["status"] == "WARNING" and "dead letters" in warned["warnings"][0]
        await connection.execute(
            "INSERT INTO view_refresh_log (view_name, started_at, finished_at, status, error) "
            "VALUES ('tier_performance_recent_mv', now(), now(), 'failed', '57014: canceled')"
        )
        failed = await structured(client, "database_status", {})
        assert failed["status"] == "ERROR"
        assert failed["errors"] == [
            "the last refresh of tier_performance_recent_mv failed: 57014: canceled"
        ]
    finally:
        await connection.execute("DELETE FROM telemetry_dead_letters")
        await connection.execute("DELETE FROM view_refresh_log WHERE status = 'failed'")
        await connection.close()


# -- after a task --------------------------------------------------------------------------


async def test_submit_feedback(client: Client, seeded_url: str) -> None:
    task_id = RECORDS[2].task_id
    stored = await structured(
        client, "submit_feedback", {"task_id": str(task_id), "rating": 2, "comment": "slow"}
    )
    assert stored["task_id"] == str(task_id) and stored["rating"] == 2
    connection = await asyncpg.connect(seeded_url)
    try:
        row = await connection.fetchrow(
            "SELECT user_rating, user_accepted FROM executions WHERE task_id = $1", task_id
        )
        comment = await connection.fetchval(
            "SELECT comment FROM feedback WHERE feedback_id = $1", uuid.UUID(stored["feedback_id"])
        )
    finally:
        await connection.close()
    assert (row["user_rating"], row["user_accepted"], comment) == (2, False, "slow")
    unknown = await error_line(
        client, "submit_feedback", {"task_id": str(uuid.uuid4()), "rating": 5}
    )
    assert "which is not stored" in unknown


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("find_similar_executions", {"task_description": "x", "limit": 0},
         "limit must be >= 1, got 0"),
        ("find_similar_executions", {"task_description": "x", "limit": "many"},
         "invalid arguments: limit: Input should be a valid integer"),
        ("find_similar_executions", {"task_description": "x", "threshold": 2},
         "threshold must be a number in [-1, 1], got 2.0"),
        ("find_similar_executions", {"task_description": "  "},
         "task_description must not be empty"),
        ("find_similar_executions", {"limit": 3},
         "invalid arguments: task_description: Field required"),
        ("tier_performance", {"days_back": -1}, "days_back must be >= 0, got -1"),
        ("solution_patterns", {"min_usage": -2}, "min_usage must be >= 0"),
        ("execution_statistics", {"time_range": "2d"}, "time_range: Input should be '1h'"),
        ("recommend_route", {"task_description": "x", "min_success": 0.9, "cost_weight": 1.0},
         "min_success"),
        ("recommend_route", {"task_description": "x", "candidates": [{"model_tier": "small"}]},
         "invalid arguments: candidates.0.pool_type: Field required"),
        ("submit_feedback", {"task_id": "not-a-uuid", "rating": 5},
         "invalid arguments: task_id: Input should be a valid UUID"),
        ("submit_feedback", {"task_id": str(uuid.UUID(int=1)), "rating": 9},
         "invalid feedback: rating: Input should be less than or equal to 5 (got 9)"),
        ("no_such_tool", {}, "Unknown tool: no_such_tool"),
    ],
)  # fmt: skip
async def test_bad_arguments_are_one_line_errors(
    client: Client, name: str, arguments: dict[str, Any], expected: str
) -> None:
    result = await call(client, name, arguments)
    assert result.is_error
    text: str = result.content[0].text  # type: ignore[union-attr]
    assert expected in text and "\n" not in text


def test_the_server_logged_no_traceback(client: Client, server_log: Path) -> None:
    assert "Traceback" not in server_log.read_text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8000", ("127.0.0.1", 8000)), ("[::1]:9", ("::1", 9)),
     ("localhost", None), (":80", None), ("host:0", None), ("host:http", None)],
)  # fmt: skip
def test_http_takes_host_and_port(text: str, expected: tuple[str, int] | None) -> None:
    import argparse

    if expected is not None:
        assert host_and_port(text) == expected
        return
    with pytest.raises(argparse.ArgumentTypeError):
        host_and_port(text)


def test_a_bad_url_stops_the_server_with_one_line() -> None:
    """A setting that cannot work is no outage: the server does not start."""
    result = subprocess.run(
        command("mysql://u:secret@host/db"),
        env=child_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "not a PostgreSQL URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "secret" not in result.stderr


# -- a database that is down ---------------------------------------------------------------


class Proxy:
    """A TCP port in front of the test server: refused until :meth:`open`, and refused again,
    its connections cut, after :meth:`close` (a server that stops and comes back)."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        socket_dir = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
        self.target = (socket_dir, parts.port or 5432)
        self.password = parts.password or "secret-pw"  # trust auth ignores it
        self.user = parts.username or "postgres"
        self.database = parts.path.lstrip("/")
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target
        if host.startswith("/"):
            upstream = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        else:
            upstream = await asyncio.open_connection(host, port)
        self._writers += [writer, upstream[1]]
        await asyncio.gather(pump(reader, upstream[1]), pump(upstream[0], writer))


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_database_down_then_back(
    server_url: str, template_url: str, tmp_path: Path
) -> None:
    async with fresh_database(server_url) as url:
        proxy = Proxy(url)
        async with Session(stdio(proxy.url, tmp_path / "server.log")) as down:
            tools = await asyncio.wait_for(down.list_tools(), CALL_TIMEOUT)
            assert {tool.name for tool in tools.tools} == READERS | WRITERS
            for _ in range(2):  # never connected; then connected, and cut
                unreachable = await error_line(down, "database_status", {})
                assert "PostgreSQL is unavailable" in unreachable and "transient" in unreachable
                assert proxy.password not in unreachable
                await proxy.open()
                status = await structured(down, "database_status", {})
                assert status["tables"]["executions"] == 0
                empty = await structured(down, "performance_metrics", {"time_range": "1h"})
                assert empty["executions"] == 0 and empty["duration"]["p50"] is None
                await proxy.close()
        assert proxy.password not in (tmp_path / "server.log").read_text()


# -- streamable HTTP -----------------------------------------------------------------------


@asynccontextmanager
async def http_server(
    url: str, log: Path, *options: str, token: str | None = None
) -> AsyncIterator[str]:
    """The server on a free port of 127.0.0.1 until the block ends (then Ctrl-C)."""
    port = free_port()
    environment = child_environment()
    if token is not None:
        environment["ORB_LEARNING_MCP_TOKEN"] = token
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command(url, "--http", f"127.0.0.1:{port}", *options),
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        await wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert status in (0, 130, -signal.SIGINT), log.read_text()


async def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        assert process.poll() is None, "the server exited"
        with suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


@asynccontextmanager
async def reader_url(url: str) -> AsyncIterator[str]:
    """``url`` as a new role made by grant-reader (what --read-only needs), dropped after."""
    from orb_learning.roles import grant_reader

    role, password = f"orb_test_mcp_{uuid.uuid4().hex[:8]}", "reader-pw"
    admin = await asyncpg.connect(url)
    try:
        await grant_reader(admin, role, login=True, password=password)
        parts = urlsplit(url)
        where = parts.netloc.rpartition("@")[2]
        yield urlunsplit(parts._replace(netloc=f"{role}:{password}@{where}"))
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def test_http_read_only_as_a_reader(seeded_url: str, tmp_path: Path) -> None:
    log = tmp_path / "http.log"
    async with (
        reader_url(seeded_url) as url,
        http_server(url, log, "--read-only") as address,
        Client(address) as http,
    ):
        tools = {tool.name: tool for tool in (await http.list_tools()).tools}
        assert set(tools) == READERS | {"recommend_route"}
        route = tools["recommend_route"]
        assert route.annotations is not None and route.annotations.read_only_hint is True
        assert "log" not in route.input_schema["properties"]
        before = await count(seeded_url, "SELECT count(*) FROM route_recommendations")
        made = await structured(http, "recommend_route", {"task_description": "Fix a bug"})
        assert made["logged"] is False and made["chosen"] is not None
        assert await count(seeded_url, "SELECT count(*) FROM route_recommendations") == before
        for name in READERS - {"find_similar_executions"}:
            await structured(http, name, {})
        tiers = await structured(http, "tier_performance", {"days_back": 365})
        assert sum(t["total_executions"] for t in tiers["tiers"]) == len(RECORDS)
    text = log.read_text()
    assert address in text and "Traceback" not in text and "reader-pw" not in text


async def test_http_with_a_token_refuses_requests_without_it(
    seeded_url: str, tmp_path: Path
) -> None:
    """ORB_LEARNING_MCP_TOKEN set: 401 without ``Authorization: Bearer <token>`` or with
    another token; the SDK's client with the header works."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    log = tmp_path / "http.log"
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with http_server(seeded_url, log, "--read-only", token="s3cret-token") as address:
        async with httpx2.AsyncClient() as plain:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "s3cret-token"},
            ):
                refused = await plain.post(address, json=hello, headers=headers)
                assert refused.status_code == 401, headers
                assert refused.headers["www-authenticate"] == "Bearer"
        bearer = {"Authorization": "Bearer s3cret-token"}
        async with (
            httpx2.AsyncClient(headers=bearer) as authorised,
            Client(streamable_http_client(address, http_client=authorised)) as http,
        ):
            names = {tool.name for tool in (await http.list_tools()).tools}
            assert names == READERS | {"recommend_route"}
            tiers = await structured(http, "tier_performance", {"days_back": 365})
            assert sum(t["total_executions"] for t in tiers["tiers"]) == len(RECORDS)
    text = log.read_text()
    assert "bearer token from ORB_LEARNING_MCP_TOKEN" in text and "s3cret-token" not in text
