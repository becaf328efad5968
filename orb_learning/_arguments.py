"""Checks of the query methods' arguments: a clear :class:`ArgumentError` (a ``ValueError``)
naming the argument, before any SQL runs."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from .errors import ArgumentError
from .models import EARLIEST_TIMESTAMP

MAX_DAYS_BACK = 1_000_000
"""The largest ``days_back`` accepted (about 2,700 years). Any window reaching before
1970-01-01, the earliest timestamp a row may hold, covers all history (see
:func:`days_back`)."""


def integer(
    name: str, value: Any, *, minimum: int, maximum: int = 2**31 - 1, allow_none: bool = False
) -> int | None:
    """An int (not a bool) in [minimum, maximum]; ``None`` only when allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ArgumentError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ArgumentError(f"{name} must be at most {maximum}, got {value}")
    return value


def days_back(value: Any) -> int:
    """A window in days, 0 to :data:`MAX_DAYS_BACK`, cut to :func:`history_days`: a longer
    window holds the same rows, and its start stays a date that Python and PostgreSQL both
    represent (740,000 days back is year -26 for PostgreSQL, an ``OverflowError`` for
    Python). Search and analytics follow this one rule."""
    checked = integer("days_back", value, minimum=0, maximum=MAX_DAYS_BACK)
    assert checked is not None
    return min(checked, history_days())


def window_or_all(value: Any) -> int | None:
    """:func:`days_back`, or None (all history) for None and for a window holding every
    row (search then needs no time filter at all)."""
    if value is None:
        return None
    days = days_back(value)
    return None if days >= history_days() else days


def history_days() -> int:
    """Days from 1970-01-01 to now, plus one: a window this long holds every row."""
    return (datetime.now(UTC) - EARLIEST_TIMESTAMP).days + 1


def threshold(value: Any) -> float:
    """A finite cosine similarity in [-1, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError(f"threshold must be a number in [-1, 1], got {value!r}")
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ArgumentError(f"threshold must be a number in [-1, 1], got {value!r}")
    return float(value)


def text(name: str, value: Any, *, allow_none: bool = False) -> str | None:
    """Non-empty text that PostgreSQL can hold: no NUL character, valid UTF-8 (no lone
    surrogate, which the tokenizer and the driver would fail on with errors of their own)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a string, got {value!r}")
    if not value.strip() and not allow_none:
        raise ArgumentError(f"{name} must not be empty")
    if "\x00" in value:
        raise ArgumentError(f"{name} contains a NUL character, which PostgreSQL text cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ArgumentError(
            f"{name} contains an unpaired surrogate at position {exc.start}, which is not "
            "valid UTF-8"
        ) from None
    return value
