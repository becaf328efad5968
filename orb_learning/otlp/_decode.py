"""An OTLP/HTTP request body into an ``ExportTraceServiceRequest``, within a size limit.

The exporters send protobuf (``application/x-protobuf``) or OTLP/JSON
(``application/json``), optionally compressed (``Content-Encoding: gzip`` or ``deflate``).
The limit counts the bytes received and, for a compressed body, the bytes it inflates to:
a small gzip bomb is refused as surely as a large body. OTLP/JSON writes trace and span ids
as hex, not as the base64 of protobuf's JSON mapping, so they are converted before parsing;
unknown fields are ignored, as the specification asks of receivers.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = [
    "JSON",
    "PROTOBUF",
    "PayloadError",
    "decompress",
    "media_type",
    "parse",
    "response_body",
]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


class PayloadError(Exception):
    """A request the receiver refuses whole: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: str | None) -> str:
    """The request's encoding (protobuf or JSON), or 415."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in (PROTOBUF, JSON):
        return kind
    raise PayloadError(415, f"unsupported Content-Type {content_type!r}: send {PROTOBUF} or {JSON}")


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body inflated (gzip, deflate or none); 413 past ``limit`` bytes inflated."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in _WBITS:
        raise PayloadError(415, f"unsupported Content-Encoding {encoding!r}: use gzip or deflate")
    inflater = zlib.decompressobj(_WBITS[name])
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise PayloadError(400, f"the body is not valid {name} data: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadError(413, f"the body inflates to more than {limit} bytes")
    if not inflater.eof:
        raise PayloadError(400, f"the {name} body is truncated")
    return data


def parse(data: bytes, kind: str) -> ExportTraceServiceRequest:
    """The request, or 400 naming why it does not parse."""
    request = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            request.ParseFromString(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise PayloadError(400, f"the body is not an OTLP protobuf request: {exc}") from None
        return request
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PayloadError(400, "an OTLP/JSON request must be a JSON object")
    try:
        json_format.ParseDict(_ids_as_base64(document), request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise PayloadError(400, f"the body is not an OTLP/JSON request: {exc}") from None
    return request


def _ids_as_base64(document: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON's hex ids as the base64 that protobuf's JSON parser reads (in place)."""
    for resource in _objects(document, "resourceSpans", "resource_spans"):
        for scope in _objects(resource, "scopeSpans", "scope_spans"):
            for span in _objects(scope, "spans"):
                _convert(span)
                for link in _objects(span, "links"):
                    _convert(link)
    return document


def _objects(parent: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
    return []


def _convert(item: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        value = item.get(key)
        if isinstance(value, str):
            try:
                item[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                raise PayloadError(400, f"{key} {value[:40]!r} is not hex") from None


def response_body(kind: str, rejected: int = 0, message: str = "") -> bytes:
    """The ExportTraceServiceResponse, in the request's encoding; partial_success only
    when spans were rejected."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if kind == PROTOBUF:
        body: bytes = response.SerializeToString()
        return body
    return json.dumps(json_format.MessageToDict(response)).encode()
