"""The OTLP/HTTP receiver, fed by the real OpenTelemetry SDK and its OTLP/HTTP exporter, on
the real server: fields, token sums and cost rules, derived task ids, re-sent spans, JSON,
children before their agent span (across requests and a restart), auth, limits, garbage,
and the ``orb-learning serve`` command."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer

from orb_learning import LearningDatabase, SentenceTransformerEmbedder
from orb_learning.otlp import TASK_NAMESPACE, OtlpReceiver, bind, http_server, url_of
from tests.conftest import fresh_database

TOKEN = "test-token-5d1c"
LIMIT = 64 << 10
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROTOBUF = {**AUTH, "Content-Type": "application/x-protobuf"}


@dataclass
class Service:
    receiver: OtlpReceiver
    url: str
    db_url: str


@pytest.fixture(scope="module")
async def db_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
async def service(
    db_url: str, embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    """One receiver over HTTP (in this event loop) for the module."""
    spool = tmp_path_factory.mktemp("otlp") / "spool.jsonl"
    async with LearningDatabase(db_url, embedder=embedder) as db:
        receiver = OtlpReceiver(
            db, spool_path=spool, token=TOKEN, max_body_bytes=LIMIT, batch_timeout=0.05
        )
        await receiver.start()
        sock = bind("127.0.0.1", 0)
        server = http_server(receiver, signals=False)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            yield Service(receiver, url_of(sock), db_url)
        finally:
            server.should_exit = True
            await task
            await receiver.close()
            sock.close()


# -- spans, made by the SDK -------------------------------------------------------------------


def spans_of(build: Callable[[Tracer], None], service_name: str = "coder") -> list[ReadableSpan]:
    """The spans ``build`` makes, in the order they end (children first)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("tests"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def chat(tracer: Tracer, tokens: tuple[int, int], **attributes: Any) -> None:
    with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat"}) as s:
        s.set_attribute("gen_ai.usage.input_tokens", tokens[0])
        s.set_attribute("gen_ai.usage.output_tokens", tokens[1])
        for key, value in attributes.items():
            s.set_attribute(key, value)


async def export(
    url: str,
    spans: Sequence[ReadableSpan],
    *,
    headers: dict[str, str] | None = AUTH,
    compression: Compression | None = None,
) -> SpanExportResult:
    """One export request, by the standard exporter (in a thread: it blocks)."""
    exporter = OTLPSpanExporter(endpoint=url, headers=headers, compression=compression, timeout=5)
    try:
        return await asyncio.to_thread(exporter.export, spans)
    finally:
        exporter.shutdown()


async def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return await asyncio.to_thread(requests.post, url, data=body, headers=headers, timeout=10)


async def stored(service: Service, task_id: uuid.UUID) -> list[asyncpg.Record]:
    assert await service.receiver.flush(timeout=30)
    connection = await asyncpg.connect(service.db_url)
    try:
        return await connection.fetch("SELECT * FROM executions WHERE task_id = $1", task_id)
    finally:
        await connection.close()


async def count(service: Service) -> int:
    assert await service.receiver.flush(timeout=30)
    connection = await asyncpg.connect(service.db_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM executions"))
    finally:
        await connection.close()


def derived_id(span: ReadableSpan) -> uuid.UUID:
    context = span.get_span_context()
    assert context is not None
    return uuid.uuid5(TASK_NAMESPACE, f"{context.trace_id:032x}/{context.span_id:016x}")


def metadata(row: asyncpg.Record) -> dict[str, Any]:
    value = row["metadata"]
    return json.loads(value) if isinstance(value, str) else dict(value)


# -- the mapping ------------------------------------------------------------------------------


async def test_an_agent_span_and_its_descendants_become_one_execution(service: Service) -> None:
    task_id, inner_id = uuid.uuid4(), uuid.uuid4()
    agent_attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.id": "agent-7",
        "gen_ai.agent.name": "coder",
        "gen_ai.conversation.id": "conv-1",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet",
        "gen_ai.usage.input_tokens": 10,
        "orb.task_id": str(task_id),
        "orb.task_type": "refactor",
        "orb.task_description": "Split the payment module into smaller services",
        "orb.repo": "payments",
        "orb.model_tier": "medium",
        "orb.pool_type": "mahavishnu",
        "orb.routing_confidence": 0.8,
        "orb.complexity_score": 64.6,
        "orb.cost_estimate": 0.05,
        "orb.actual_cost": 0.04,
        "orb.quality_score": 91,
        "orb.solution_summary": "extracted three services",
    }

    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("invoke_agent coder", attributes=agent_attributes):
            chat(tracer, (100, 20), **{"orb.actual_cost": 0.5})  # the agent's own cost wins
            with tracer.start_as_current_span("execute_tool run_tests"):
                with tracer.start_as_current_span("http"):  # a plain span in between
                    chat(tracer, (1000, 200))
                nested = {"gen_ai.operation.name": "invoke_agent", "orb.task_id": str(inner_id)}
                with tracer.start_as_current_span("invoke_agent reviewer", attributes=nested):
                    chat(tracer, (7, 3), **{"orb.actual_cost": 0.002})

    spans = spans_of(build)
    assert await export(service.url, spans) is SpanExportResult.SUCCESS
    [row] = await stored(service, task_id)
    expected = {
        "task_type": "refactor",
        "task_description": "Split the payment module into smaller services",
        "repo": "payments",
        "model_tier": "medium",
        "pool_type": "mahavishnu",
        "complexity_score": 65,
        "quality_score": 91,
        "solution_summary": "extracted three services",
        "success": True,
        "estimated_tokens": 10 + 100 + 20 + 1000 + 200,  # not the nested agent's 7 + 3
        "error_type": None,
    }
    assert {k: row[k] for k in expected} == expected
    assert row["routing_confidence"] == pytest.approx(0.8)
    assert row["cost_estimate"] == pytest.approx(0.05)
    assert row["actual_cost"] == pytest.approx(0.04)
    agent = spans[-1]
    assert agent.start_time is not None and agent.end_time is not None
    assert row["duration_seconds"] == pytest.approx((agent.end_time - agent.start_time) / 1e9)
    assert row["timestamp"].timestamp() == pytest.approx(agent.start_time / 1e9, abs=1e-5)
    meta = metadata(row)
    assert meta["input_tokens"] == 1110 and meta["output_tokens"] == 220
    assert meta["child_spans"] == 4  # chat, tool, http, chat: the nested agent's are its own
    wanted = {"model": "claude-sonnet", "provider": "anthropic", "agent_id": "agent-7"}
    wanted |= {"agent_name": "coder", "conversation_id": "conv-1", "service_name": "coder"}
    assert wanted.items() <= meta.items()
    [inner] = await stored(service, inner_id)
    assert inner["estimated_tokens"] == 10 and inner["actual_cost"] == pytest.approx(0.002)
    assert inner["model_tier"] == "unknown" and inner["pool_type"] == "coder"


async def test_defaults_derived_task_id_and_a_resent_span(service: Service) -> None:
    def build(tracer: Tracer) -> None:
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "fixer",
            "gen_ai.agent.description": "Fixes failing unit tests in the billing service",
            "error.type": "timeout",
        }
        with tracer.start_as_current_span("invoke_agent fixer", attributes=attributes) as agent:
            chat(tracer, (30, 5), **{"orb.actual_cost": 0.25, "gen_ai.response.model": "gpt-x"})
            chat(tracer, (40, 6), **{"orb.actual_cost": 0.5})
            agent.set_status(Status(StatusCode.ERROR, "the agent timed out after 600 s"))

    spans = spans_of(build)
    task_id = derived_id(spans[-1])
    before = await count(service)
    for _ in range(2):  # a retried export: still one execution
        assert await export(service.url, spans) is SpanExportResult.SUCCESS
    [row] = await stored(service, task_id)
    assert await count(service) == before + 1
    assert row["task_description"] == "Fixes failing unit tests in the billing service"
    assert (row["task_type"], row["repo"], row["pool_type"]) == ("unknown", "unknown", "fixer")
    assert row["model_tier"] == "gpt-x"  # the agent names none: its first chat's model
    assert row["actual_cost"] == pytest.approx(0.75)  # the children's, summed
    assert row["estimated_tokens"] == 81
    assert row["routing_confidence"] == pytest.approx(0.5) and row["complexity_score"] == 50
    assert row["success"] is False and row["error_type"] == "timeout"
    assert row["error_message"] == "the agent timed out after 600 s"


async def test_children_before_their_agent_span_and_a_late_child(service: Service) -> None:
    def build(tracer: Tracer) -> None:
        agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "m1"}
        with tracer.start_as_current_span("invoke_agent planner", attributes=agent):
            chat(tracer, (11, 1))
            with tracer.start_as_current_span("execute_tool search"):
                chat(tracer, (22, 2))
            chat(tracer, (33, 3))

    first, grandchild, tool, last, agent = spans_of(build)
    task_id = derived_id(agent)
    assert await export(service.url, [grandchild]) is SpanExportResult.SUCCESS
    assert await export(service.url, [first, tool]) is SpanExportResult.SUCCESS
    assert await stored(service, task_id) == []
    assert await export(service.url, [agent]) is SpanExportResult.SUCCESS
    [row] = await stored(service, task_id)
    assert row["estimated_tokens"] == 11 + 1 + 22 + 2
    assert await export(service.url, [last]) is SpanExportResult.SUCCESS  # after its parent
    [row] = await stored(service, task_id)
    assert row["estimated_tokens"] == 11 + 1 + 22 + 2 + 33 + 3
    assert metadata(row)["output_tokens"] == 6


async def test_held_children_survive_a_restart(
    db_url: str, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("agent", attributes={"orb.task_id": str(task_id)}):
            chat(tracer, (500, 50))

    task_id = uuid.uuid4()
    child, agent = spans_of(build)
    async with LearningDatabase(db_url, embedder=embedder) as db:
        async with OtlpReceiver(db, spool_path=tmp_path / "s.jsonl", batch_timeout=0.05) as first:
            accepted = await first.accept(encode_spans([child]))
            assert accepted.durable and accepted.executions == 0
        async with OtlpReceiver(db, spool_path=tmp_path / "s.jsonl", batch_timeout=0.05) as again:
            assert again.spans_held == 1  # reloaded from the span journal
            accepted = await again.accept(encode_spans([agent]))
            assert accepted.durable and accepted.executions == 1
            assert await again.flush(timeout=30)
        async with db.connection() as connection:
            tokens = await connection.fetchval(
                "SELECT estimated_tokens FROM executions WHERE task_id = $1", task_id
            )
        assert tokens == 550


# -- encodings and refusals -------------------------------------------------------------------


def json_request(spans: list[dict[str, Any]]) -> bytes:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "js-agent"}}]}
    return json.dumps(
        {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
    ).encode()


def json_span(span_id: str, attributes: dict[str, Any], parent: str = "") -> dict[str, Any]:
    values = []
    for key, value in attributes.items():
        kind = "intValue" if isinstance(value, int) else "stringValue"
        values.append({"key": key, "value": {kind: str(value) if kind == "intValue" else value}})
    return {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": span_id,
        "parentSpanId": parent,
        "name": "invoke_agent js",
        "kind": 1,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000002500000000",
        "attributes": values,
        "status": {"code": 1},
    }


async def test_json_requests_and_partial_success(service: Service) -> None:
    good, bad = uuid.uuid4(), uuid.uuid4()
    body = json_request(
        [
            json_span("eee19b7ec3c1b174", {"orb.task_id": str(good), "orb.repo": "web"}),
            json_span("eee19b7ec3c1b175", {"gen_ai.usage.input_tokens": 9}, "eee19b7ec3c1b174"),
            json_span("eee19b7ec3c1b176", {"orb.task_id": str(bad), "orb.quality_score": 500}),
        ]
    )
    answer = await post(service.url, body, {**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    partial = answer.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert "eee19b7ec3c1b176" in partial["errorMessage"]
    assert "quality_score" in partial["errorMessage"]
    [row] = await stored(service, good)
    assert (row["repo"], row["pool_type"], row["estimated_tokens"]) == ("web", "js-agent", 9)
    assert row["duration_seconds"] == pytest.approx(2.5)
    assert await stored(service, bad) == []
    again = await post(service.url, json_request([]), {**AUTH, "Content-Type": "application/json"})
    assert again.status_code == 200 and again.json() == {}


async def test_a_token_is_required_when_set(service: Service) -> None:
    spans = spans_of(lambda tracer: chat(tracer, (1, 1)))
    assert await export(service.url, spans, headers=None) is SpanExportResult.FAILURE
    wrong = {"Authorization": "Bearer not-the-token"}
    assert await export(service.url, spans, headers=wrong) is SpanExportResult.FAILURE
    body = encode_spans(spans).SerializeToString()
    kind = {"Content-Type": "application/x-protobuf"}
    for headers in ({}, wrong, {"Authorization": TOKEN}):
        answer = await post(service.url, body, {**headers, **kind})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    answer = await post(service.url, body, PROTOBUF)
    assert answer.status_code == 200
    response = ExportTraceServiceResponse.FromString(answer.content)
    assert not response.HasField("partial_success")


async def test_bodies_over_the_limit_get_413_compressed_or_not(service: Service) -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("agent", attributes={"orb.task_id": str(task_id)}):
            chat(tracer, (2, 2))

    task_id = uuid.uuid4()
    spans = spans_of(build)
    assert await export(service.url, spans, compression=Compression.Gzip) is (
        SpanExportResult.SUCCESS
    )
    assert len(await stored(service, task_id)) == 1
    before = await count(service)
    large = await post(service.url, b"\0" * (LIMIT + 1), PROTOBUF)
    assert large.status_code == 413
    bomb = gzip.compress(b"\0" * (LIMIT * 4))  # small on the wire, large inflated
    assert len(bomb) < LIMIT
    inflated = await post(service.url, bomb, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert inflated.status_code == 413
    assert await count(service) == before


async def test_malformed_requests_get_400_and_store_nothing(service: Service) -> None:
    task_id = uuid.uuid4()
    good = json_span("aaa19b7ec3c1b174", {"orb.task_id": str(task_id)})
    before = await count(service)
    json_headers = {**AUTH, "Content-Type": "application/json"}
    cases = [
        (b"\x0a\xff\xff\xff\x0f garbage", PROTOBUF, 400),
        (b"{not json", json_headers, 400),
        (json_request([good, {**good, "spanId": "not-hex"}]), json_headers, 400),
        (json.dumps({"resourceSpans": 3}).encode(), json_headers, 400),
        (b"hello", {**PROTOBUF, "Content-Encoding": "gzip"}, 400),
        (json_request([good]), {**AUTH, "Content-Type": "text/plain"}, 415),
    ]
    for body, headers, status in cases:
        answer = await post(service.url, body, headers)
        assert answer.status_code == status, (body[:40], answer.text)
    assert await count(service) == before
    assert await stored(service, task_id) == []


# -- the command ------------------------------------------------------------------------------


async def test_the_serve_command_stores_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("agent", attributes={"orb.task_id": str(task_id)}):
            chat(tracer, (120, 30))
            chat(tracer, (80, 20))

    task_id = uuid.uuid4()
    one, two, agent = spans_of(build)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORB_LEARNING_")}
    env |= {"ORB_LEARNING_DATABASE_URL": db_url, "ORB_LEARNING_OTLP_TOKEN": TOKEN}
    command = [sys.executable, "-m", "orb_learning.cli", "serve", "--otlp", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--spool", str(tmp_path / "spool.jsonl")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 120)
        assert "bearer token required" in line, line + (process.stderr.read() if not line else "")
        url = line.split(" on ", 1)[1].split()[0]
        for batch in ([one], [two], [agent]):  # children first, each in its own request
            assert await export(url, batch) is SpanExportResult.SUCCESS
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "1 executions stored" in out and "0 lost" in out, out + err
    connection = await asyncpg.connect(db_url)
    try:
        tokens = await connection.fetchval(
            "SELECT estimated_tokens FROM executions WHERE task_id = $1", task_id
        )
    finally:
        await connection.close()
    assert tokens == 250
