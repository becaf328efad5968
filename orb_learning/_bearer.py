"""Bearer-token checks for the HTTP servers (``serve --otlp``, ``mcp --http``): a token from
the environment, compared in constant time, 401 with ``WWW-Authenticate: Bearer`` otherwise.

A static shared secret, as OpenTelemetry collectors' ``bearertokenauth`` and MCP clients'
``headers`` configuration both send; an OAuth authorisation server is beyond what these
services need (put one in a proxy in front if you have it)."""

from __future__ import annotations

import hmac
from typing import Any

__all__ = ["BearerTokenMiddleware", "authorized"]

Scope = dict[str, Any]
ASGIApp = Any


def authorized(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (scheme case-insensitive)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


class BearerTokenMiddleware:
    """An ASGI middleware: HTTP requests without the token get 401 and never reach ``app``
    (lifespan events pass through)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or authorized(_header(scope, b"authorization"), self.token):
            await self.app(scope, receive, send)
            return
        body = b"a valid bearer token is required\n"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
