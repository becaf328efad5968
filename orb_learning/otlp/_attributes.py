"""Typed reads of a span's attributes (OTLP ``KeyValue`` lists), refusing what does not fit.

Only the attributes the mapping uses are read, each with the type it needs; a value of
another type makes the span a :class:`BadSpan` whose message names the attribute, so the
exporter's ``partial_success`` says what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["Attributes", "BadSpan"]


class BadSpan(ValueError):
    """A span that cannot be taken; the message is the reason."""


class Attributes:
    """The attributes of a span (or a resource, or a span event), by key."""

    def __init__(self, pairs: Iterable[Any]) -> None:
        self._values = {pair.key: pair.value for pair in pairs}

    def __contains__(self, key: str) -> bool:
        return self._kind(key) is not None

    def _kind(self, key: str) -> str | None:
        value = self._values.get(key)
        return None if value is None else value.WhichOneof("value")

    def text(self, key: str) -> str | None:
        kind = self._kind(key)
        if kind is None:
            return None
        if kind != "string_value":
            raise BadSpan(f"{key} must be a string, not {_name(kind)}")
        text: str = self._values[key].string_value
        return text

    def number(self, key: str) -> float | None:
        """An int or a double, finite and not negative."""
        kind = self._kind(key)
        if kind is None:
            return None
        if kind not in ("int_value", "double_value"):
            raise BadSpan(f"{key} must be a number, not {_name(kind)}")
        number = float(getattr(self._values[key], kind))
        if not math.isfinite(number) or number < 0:
            raise BadSpan(f"{key} must be a finite number >= 0, got {number}")
        return number

    def count(self, key: str) -> int:
        """A non-negative integer (a double with no fraction is taken); 0 when absent."""
        number = self.number(key)
        if number is None:
            return 0
        if not number.is_integer():
            raise BadSpan(f"{key} must be a whole number, got {number}")
        return int(number)

    def score(self, key: str) -> int | None:
        """A 0-100 score; a fractional value is rounded (evaluators often score in floats)."""
        number = self.number(key)
        return None if number is None else round(number)


def _name(kind: str) -> str:
    return {
        "string_value": "a string",
        "bool_value": "a boolean",
        "int_value": "an integer",
        "double_value": "a double",
        "array_value": "an array",
        "kvlist_value": "a key/value list",
        "bytes_value": "bytes",
    }.get(kind, kind)
