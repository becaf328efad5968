"""Serving the receiver over HTTP with uvicorn, until SIGTERM or Ctrl-C.

The socket is bound before anything starts, so a busy port is a one-line error (uvicorn
would exit the process from inside its startup). SIGINT and SIGTERM stop the server (the
requests in progress are answered), then the receiver closes, storing what it holds;
unlike uvicorn's own handling, the signal is not raised again afterwards, so a clean stop
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Generator

import uvicorn

from ..errors import ArgumentError
from ..telemetry import ShutdownReport
from ._receiver import OtlpReceiver

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "bind", "http_server", "serve", "url_of"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318  # OTLP/HTTP's registered port
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, its stop signals handled on the loop (or not at all)."""

    def __init__(self, config: uvicorn.Config, *, signals: bool) -> None:
        super().__init__(config)
        self._signals = signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self._signals:
            yield
            return
        loop = asyncio.get_running_loop()
        for number in _SIGNALS:
            loop.add_signal_handler(number, self.handle_exit, number, None)
        try:
            yield
        finally:
            for number in _SIGNALS:
                loop.remove_signal_handler(number)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise ArgumentError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def http_server(receiver: OtlpReceiver, *, signals: bool = True) -> uvicorn.Server:
    """A uvicorn server of the receiver's app (``server.serve(sockets=[...])`` runs it;
    ``server.should_exit = True`` stops it)."""
    config = uvicorn.Config(receiver.app, lifespan="off", log_level="warning", access_log=False)
    return _Server(config, signals=signals)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1/traces"


async def serve(
    receiver: OtlpReceiver,
    sock: socket.socket,
    *,
    started: Callable[[str], None] | None = None,
) -> ShutdownReport:
    """Start the receiver, serve on ``sock`` until SIGINT/SIGTERM, then close the
    receiver; ``started`` is called with the endpoint's URL once it answers."""
    await receiver.start()
    try:
        server = http_server(receiver)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and started is not None:
            started(url_of(sock))
        await task
    finally:
        report = await receiver.close()
    return report
