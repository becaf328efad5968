"""A JSON-safe copy of whatever an orchestrator puts in an event.

Raw events are kept for dead letters (a jsonb column) and the spool (JSON lines), so they
must survive ``json.dumps(allow_nan=False)`` and PostgreSQL's jsonb, which refuses NUL
characters and lone surrogates, whatever objects the producer passed (a router's
``ModelRouting`` dataclass, enums, datetimes, UUIDs).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

__all__ = ["jsonable"]


def jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON (and jsonb) safe copy: enums by value, datetimes and UUIDs as strings,
    objects by their public attributes, NUL replaced by U+FFFD, lone surrogates by "?"."""
    if _depth > 32:
        return repr(value)
    if isinstance(value, Enum):
        return jsonable(value.value, _depth + 1)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: not UTF-8, not storable
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return jsonable(value.decode("utf-8", "replace"), _depth + 1)
    if isinstance(value, Mapping):
        return {str(jsonable(k, _depth + 1)): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item, _depth + 1) for item in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(), _depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return jsonable(fields, _depth + 1)
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        public = {k: v for k, v in attributes.items() if not k.startswith("_")}
        return jsonable(public, _depth + 1)
    return repr(value)
