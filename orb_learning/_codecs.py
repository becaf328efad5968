"""The asyncpg codecs every connection of the library gets: pgvector's ``vector`` and
JSON for ``jsonb`` (binary, so that COPY works too)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg


async def init_connection(connection: asyncpg.Connection) -> None:
    """Per-connection codecs: pgvector's ``vector`` and JSON for ``jsonb``."""
    from pgvector.asyncpg import register_vector

    await register_vector(connection)
    await connection.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",  # binary COPY needs a binary encoder
    )


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary format is a version byte (1) followed by the JSON text.
    return b"\x01" + json.dumps(value, allow_nan=False).encode()


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])
