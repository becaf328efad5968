"""The HTTP face of the receiver: ``POST /v1/traces`` as OTLP/HTTP defines it (Starlette).

In order: the bearer token (401, compared in constant time), the media type (415), the
body's size as received and as inflated (413), its parsing (400: nothing of it is kept),
then the spans (:meth:`Acceptor.accept`). 200 carries an ``ExportTraceServiceResponse`` in
the request's encoding, with ``partial_success`` when some spans were refused; 503 (which
the exporters retry) when the spans could not be made durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._bearer import authorized
from ._decode import PayloadError, decompress, media_type, parse, response_body

__all__ = ["Accepted", "Acceptor", "build_app"]

TRACES_PATH = "/v1/traces"
_REASONS_SHOWN = 5


@dataclass(frozen=True)
class Accepted:
    """What became of an export request's spans."""

    spans: int  # taken
    refused: list[str] = field(default_factory=list)  # a reason per span refused
    durable: bool = True  # on disk (journaled) before the answer
    executions: int = 0  # agent executions captured (new or updated)

    def message(self) -> str:
        shown = "; ".join(self.refused[:_REASONS_SHOWN])
        more = len(self.refused) - _REASONS_SHOWN
        return shown + (f"; and {more} more" if more > 0 else "")


class Acceptor(Protocol):
    """What the app needs of the receiver."""

    token: str | None
    max_body_bytes: int

    async def accept(self, request: Any) -> Accepted: ...


async def _body(request: Request, limit: int) -> bytes:
    """The body as received, refused (413) as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadError(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _text(status: int, message: str, **headers: str) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain", headers=headers)


def build_app(receiver: Acceptor) -> Starlette:
    """The ASGI app of ``receiver`` (mountable in another Starlette app as well)."""

    async def export_traces(request: Request) -> Response:
        token = receiver.token
        if token and not authorized(request.headers.get("authorization"), token):
            return _text(401, "a valid bearer token is required", **{"WWW-Authenticate": "Bearer"})
        try:
            kind = media_type(request.headers.get("content-type"))
            limit = receiver.max_body_bytes
            body = await _body(request, limit)
            data = decompress(body, request.headers.get("content-encoding"), limit)
            message = parse(data, kind)
        except PayloadError as exc:
            return _text(exc.status, exc.message)
        accepted = await receiver.accept(message)
        if not accepted.durable:
            return _text(503, "the spans could not be journaled: try again", **{"Retry-After": "5"})
        content = response_body(kind, len(accepted.refused), accepted.message())
        return Response(content, media_type=kind)

    return Starlette(routes=[Route(TRACES_PATH, export_traces, methods=["POST"])])
