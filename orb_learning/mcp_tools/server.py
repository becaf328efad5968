"""The MCP server: its tools, its failures as one-line error results, and its transports
(stdio, or streamable HTTP at ``/mcp``)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from .. import __version__
from .._bearer import BearerTokenMiddleware
from .errors import explain
from .tools import Tools

if TYPE_CHECKING:
    from mcp_types import CallToolResult, InputRequiredResult

    from ..database import LearningDatabase

NAME = "orb-learning"
HTTP_PATH = "/mcp"
TOKEN_VARIABLE = "ORB_LEARNING_MCP_TOKEN"
"""When set, HTTP requests must carry ``Authorization: Bearer <token>`` (else 401)."""
INSTRUCTIONS = """\
orb-learning remembers how past coding-agent tasks went (tier, pool, outcome, cost).
Before a task: recommend_route (which model tier and worker pool) or
find_similar_executions (what was tried on similar tasks). After it, the orchestrator
stores the execution (with the recommendation_id); submit_feedback stores the user's
rating. tier_performance, pool_performance, solution_patterns, execution_statistics,
performance_metrics and database_status describe the history and the store."""


class LearningServer(MCPServer[Any]):
    """An :class:`MCPServer` whose tool errors are one line: the library's message (with
    whether to retry), or the argument that failed validation."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            explained = explain(name, exc)
            if explained is None:
                raise
            raise explained from exc.__cause__


def build_server(
    db: LearningDatabase, *, read_only: bool = False, verbose: bool = False
) -> LearningServer:
    """The server, with every tool or (``read_only``) the readers alone; ``db`` is opened
    on the first call."""
    level: Literal["INFO", "WARNING"] = "INFO" if verbose else "WARNING"
    server = LearningServer(NAME, version=__version__, instructions=INSTRUCTIONS, log_level=level)
    Tools(db, read_only=read_only).register(server)
    return server


async def serve(server: LearningServer, http: tuple[str, int] | None = None) -> None:
    """Over stdio until the client closes it, or over streamable HTTP until interrupted."""
    if http is None:
        if sys.stdin.isatty():  # started by hand: say what it waits for
            print(
                "orb-learning MCP server on stdio, waiting for an MCP client's messages "
                "(Ctrl-C stops it; --http HOST:PORT serves HTTP)",
                file=sys.stderr,
            )
        await server.run_stdio_async()
        return
    host, port = http
    shown = f"[{host}]" if ":" in host else host
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    guard = f"bearer token from {TOKEN_VARIABLE}" if token else "no authentication"
    print(f"orb-learning MCP server on http://{shown}:{port}{HTTP_PATH} ({guard})", file=sys.stderr)
    await _serve_http(server, host, port, token or None)


async def _serve_http(server: LearningServer, host: str, port: int, token: str | None) -> None:
    """The SDK's streamable HTTP app, behind the bearer-token check when there is a token,
    under uvicorn (what ``run_streamable_http_async`` does, plus the check)."""
    import uvicorn

    app: Any = server.streamable_http_app(streamable_http_path=HTTP_PATH, host=host)
    if token is not None:
        app = BearerTokenMiddleware(app, token)
    level = server.settings.log_level.lower()
    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=level)).serve()
