"""``orb-learning serve --otlp HOST:PORT``: the OpenTelemetry (OTLP/HTTP) trace receiver,
until SIGTERM or Ctrl-C (which stop it after storing what it holds)."""

from __future__ import annotations

import argparse
import os

DEFAULT_ADDRESS = "127.0.0.1:4318"  # OTLP/HTTP's port, on this machine only
TOKEN_VARIABLE = "ORB_LEARNING_OTLP_TOKEN"


def address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:4318`` for IPv6; port 0: any free port) -> (host, port)."""
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:4318)")
    return host, int(port)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="receive agents' OpenTelemetry GenAI spans (OTLP/HTTP) as executions",
        description="Listens for OTLP/HTTP trace exports (POST /v1/traces, protobuf or JSON) "
        "and stores each agent-invocation span as an execution, its child spans' tokens and "
        f"cost summed in. Requests must carry `Authorization: Bearer ${TOKEN_VARIABLE}` when "
        "that variable is set. Runs until SIGTERM or Ctrl-C, which stop it after storing "
        "what it holds. See docs/otlp.md.",
    )
    parser.add_argument(
        "--otlp",
        type=address,
        default=DEFAULT_ADDRESS,
        metavar="HOST:PORT",
        help="where to listen (0.0.0.0:4318 for every interface; port 0: any free port)",
    )
    parser.add_argument(
        "--spool",
        default="data/otlp-spool/spool.jsonl",
        metavar="PATH",
        help="the capture's spool and journals, and the held spans' journal",
    )
    parser.add_argument(
        "--trace-window",
        type=positive_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="how long a trace's spans wait for the rest of the trace after its last span",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    from ..database import LearningDatabase
    from ..otlp import OtlpReceiver, bind, serve

    host, port = args.otlp
    sock = bind(host, port)  # a busy port fails here, before the model loads
    guarded = bool(os.environ.get(TOKEN_VARIABLE))

    def started(url: str) -> None:
        note = "bearer token required" if guarded else f"no token: set {TOKEN_VARIABLE}"
        print(f"orb-learning: receiving OTLP traces on {url} ({note})", flush=True)

    database = LearningDatabase(args.dsn, database_path=args.data_dir)
    try:
        # Connected, migrated and the model loaded before the first request, or a one-line
        # error now; an outage later is the capture's to ride out (journal, spool, retries).
        await database.initialize()
        receiver = OtlpReceiver(database, spool_path=args.spool, trace_window=args.trace_window)
        report = await serve(receiver, sock, started=started)
    finally:
        sock.close()
        await database.close()
    print(
        f"orb-learning: stopped; {report.records_stored} executions stored, "
        f"{report.spooled + report.in_journal} kept for the next start, {report.lost} lost",
        flush=True,
    )
    return 0 if report.complete else 1
