"""A JSON-safe copy of whatever an orchestrator puts in an event.

Raw events are kept for dead letters (a jsonb column) and the spool (JSON lines), so they
must survive ``json.dumps(allow_nan=False)`` and PostgreSQL's jsonb, which refuses NUL
characters and lone surrogates, whatever objects the producer passed (a router's
``ModelRouting`` dataclass, enums, datetimes, UUIDs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from enum import Enum
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring_ascii,
)
from typing import Any

__all__ = ["event_json", "jsonable"]


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


# -- the journaled form of an event ---------------------------------------------------------


def _attributes(kind: type) -> tuple[str, ...]:
    """The public attributes an object of ``kind`` is read by: a dataclass's fields, its
    slots, and its properties (a router's object may compute its tier); cached per type."""
    names = _ATTRIBUTES.get(kind)
    if names is None:
        found: dict[str, None] = {}
        if dataclasses.is_dataclass(kind):
            found.update((f.name, None) for f in dataclasses.fields(kind))
        for cls in reversed(kind.__mro__):
            slots = vars(cls).get("__slots__", ())
            found.update((s, None) for s in ((slots,) if isinstance(slots, str) else slots))
            found.update((k, None) for k, v in vars(cls).items() if isinstance(v, property))
        names = _ATTRIBUTES[kind] = tuple(n for n in found if not n.startswith("_"))
    return names


_ATTRIBUTES: dict[type, tuple[str, ...]] = {}
_MISSING = object()


def _plain(value: Any) -> Any:
    """One value JSON does not know, as JSON does (called by the encoder, once per object:
    what it returns is encoded in turn). Unlike :func:`jsonable`, text stays as it is (NUL
    included), so that the validation behind the call sees exactly what was passed. The
    way to convert is chosen once per type (the caller's path is timed in microseconds)."""
    kind = type(value)
    convert = _CONVERTERS.get(kind)
    if convert is None:
        convert = _converter(kind)
        if len(_CONVERTERS) < 1024:
            _CONVERTERS[kind] = convert
    return convert(value)


_CONVERTERS: dict[type, Callable[[Any], Any]] = {}


def _converter(kind: type) -> Callable[[Any], Any]:
    if issubclass(kind, Enum):
        return _enum_value
    if issubclass(kind, datetime | date | time):
        return _isoformat
    if issubclass(kind, uuid.UUID | BaseException):
        return _text
    if issubclass(kind, set | frozenset):
        return list
    if issubclass(kind, bytes | bytearray):
        return _decoded
    if issubclass(kind, Mapping):
        return dict
    if kind.__module__ == "numpy" and callable(getattr(kind, "item", None)):
        return _item  # numpy scalars
    if callable(getattr(kind, "model_dump", None)):
        return _model_dump
    return _object


def _enum_value(value: Enum) -> Any:
    return value.value


def _isoformat(value: datetime | date | time) -> str:
    return value.isoformat()


def _text(value: Any) -> str:
    return str(value) or type(value).__name__  # an exception without a message: its type


def _decoded(value: bytes | bytearray) -> str:
    return bytes(value).decode("utf-8", "replace")


def _item(value: Any) -> Any:
    return value.item()


def _model_dump(value: Any) -> Any:
    return value.model_dump()


def _object(value: Any) -> Any:
    """An object by its public attributes: instance ones, then fields, slots, properties."""
    fields: dict[str, Any] = {}
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        fields.update((k, v) for k, v in attributes.items() if k[:1] != "_")
    for name in _attributes(type(value)):
        if name not in fields:
            try:
                item = getattr(value, name, _MISSING)
            except Exception:  # a property that fails is left out, as a missing one
                continue
            if item is not _MISSING:
                fields[name] = item
    return fields if fields or attributes is not None else repr(value)


def _tree(value: Any, depth: int = 0) -> Any:
    """The slow path, for what the encoder refuses (cycles, very deep nesting, keys that are
    not text or numbers): the same conversion, by hand, with a depth limit."""
    if depth > 32:
        return repr(value)
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping):
        return {_key(k, depth): _tree(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tree(v, depth + 1) for v in value]
    return _tree(_plain(value), depth + 1)


def _key(key: Any, depth: int) -> Any:
    if key is None or isinstance(key, str | int | float):
        return key
    return str(_tree(key, depth + 1))


def _encoding() -> Callable[[Any], str]:
    """The C encoder itself, made once (``json.dumps`` makes one per call), without the
    cycle check: a cycle ends in RecursionError, and the slow path. (Plain ``json`` where
    the C accelerator is missing.)"""
    if c_make_encoder is None:
        return json.JSONEncoder(default=_plain, separators=(",", ":")).encode
    encoder = c_make_encoder(
        None, _plain, encode_basestring_ascii, None, ":", ",", False, False, True
    )
    return lambda value: "".join(encoder(value, 0))


_encode = _encoding()


def event_json(data: Mapping[str, Any]) -> str:
    """The event as JSON text, read now: what the journal keeps and what the validation
    behind the call parses, so that a replay sees exactly what the call saw. Enums by value,
    datetimes as ISO 8601, UUIDs as text, objects by their public attributes; NaN and
    infinities kept (as JSON's NaN/Infinity, which Python reads back). ASCII only, so a
    lone surrogate survives too (escaped)."""
    try:
        return _encode(data)
    except (TypeError, ValueError, RecursionError):
        return _encode(_tree(data))
