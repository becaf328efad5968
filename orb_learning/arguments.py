"""Checks of the query methods' arguments: a clear ``ValueError`` before any SQL runs."""

from __future__ import annotations

import math
from typing import Any

MAX_DAYS_BACK = 1_000_000
"""About 2,700 years: further back than that leaves PostgreSQL's timestamp range."""


def integer(
    name: str, value: Any, *, minimum: int, maximum: int = 2**31 - 1, allow_none: bool = False
) -> int | None:
    """An int (not a bool) in [minimum, maximum]; ``None`` only when allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def threshold(value: Any) -> float:
    """A finite cosine similarity in [-1, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"threshold must be a number in [-1, 1], got {value!r}")
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ValueError(f"threshold must be a number in [-1, 1], got {value!r}")
    return float(value)


def text(name: str, value: Any, *, allow_none: bool = False) -> str | None:
    """Non-empty text that PostgreSQL can hold (no NUL character)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    if not value.strip() and not allow_none:
        raise ValueError(f"{name} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character, which PostgreSQL text cannot store")
    return value
