"""``orb-learning mcp [--http HOST:PORT] [--read-only]``: the store's tools for agents, over
the Model Context Protocol (docs/mcp.md). The database is the global one (--dsn,
ORB_LEARNING_DATABASE_URL, else the embedded server under --data-dir), opened on the first
tool call; the embedding model loads on the first search."""

from __future__ import annotations

import argparse

from .common import open_database

MAX_PORT = 65535


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "mcp",
        help="serve the store's tools to agents over MCP (stdio, or --http)",
        description="An MCP server for agents: find_similar_executions, recommend_route, "
        "tier_performance, pool_performance, solution_patterns, execution_statistics, "
        "performance_metrics, database_status and submit_feedback. Over stdio unless --http.",
    )
    parser.add_argument(
        "--http",
        type=host_and_port,
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio; requests must "
        "carry `Authorization: Bearer $ORB_LEARNING_MCP_TOKEN` when that variable is set "
        "(without it, bind to 127.0.0.1)",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="leave out the tools that write: submit_feedback, and recommend_route's log "
        "(its recommendations are not written to route_recommendations)",
    )
    parser.set_defaults(handler=run)


def host_and_port(text: str) -> tuple[str, int]:
    """argparse type: ``HOST:PORT`` (``[::1]:8000`` for IPv6)."""
    host, separator, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not separator or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8000, got {text!r}")
    if not port.isdigit() or not 1 <= int(port) <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"the port must be 1 to {MAX_PORT}, got {port!r}")
    return host, int(port)


async def run(args: argparse.Namespace) -> int:
    from ..mcp_tools.server import build_server, serve

    db = open_database(args)  # connects on the first call: the server starts while it is down
    server = build_server(db, read_only=args.read_only, verbose=args.verbose)
    try:
        await serve(server, args.http)
    finally:
        await db.close()
    return 0
