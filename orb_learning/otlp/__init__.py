"""OpenTelemetry ingest: agents' GenAI spans, sent over OTLP/HTTP, stored as executions.

An agent-invocation span (``gen_ai.operation.name = invoke_agent``, or any span carrying
``orb.task_id``) becomes one execution; its descendant spans (chat, tool calls...) add
their ``gen_ai.usage.*`` tokens and their ``orb.actual_cost`` (when the agent span has
none). Executions go through :class:`~orb_learning.TelemetryCapture` (journal, batches,
spool, upsert by ``task_id``). ``orb-learning serve --otlp HOST:PORT`` runs it; the
mapping table and the defaults are on docs/otlp.md.

This package imports starlette, uvicorn and opentelemetry-proto: ``import orb_learning``
does not import it.
"""

from __future__ import annotations

from ._app import Accepted
from ._mapping import AGENT_OPERATION, TASK_NAMESPACE
from ._receiver import DEFAULT_SPOOL_PATH, TOKEN_VARIABLE, OtlpReceiver
from ._server import DEFAULT_HOST, DEFAULT_PORT, bind, http_server, serve, url_of

__all__ = [
    "AGENT_OPERATION",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_SPOOL_PATH",
    "TASK_NAMESPACE",
    "TOKEN_VARIABLE",
    "Accepted",
    "OtlpReceiver",
    "bind",
    "http_server",
    "serve",
    "url_of",
]
