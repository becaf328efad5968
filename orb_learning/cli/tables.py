"""Plain-text tables for a terminal: aligned columns, one number format per column.

Hand-written rather than ``rich``: the whole of it is this page, it adds nothing to the
command's start-up, and piped output stays plain aligned text that scripts and tests read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

SIGNIFICANT = 3
"""Significant digits shown of a column's smallest non-zero number; the column's other
numbers get as many decimals."""
MAX_DECIMALS = 6


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """An aligned table of ``columns`` of ``rows``; '(no rows)' when empty."""
    if not rows:
        return "(no rows)"
    formats = [_column_format(column, [row.get(column) for row in rows]) for column in columns]
    cells = [[fmt(row.get(c)) for c, fmt in zip(columns, formats, strict=True)] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    header = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join([header, rule, *body])


def _column_format(column: str, values: Sequence[Any]) -> Callable[[Any], str]:
    """How every value of one column is written: its fractions with the same decimals."""
    fractions = [
        float(v)
        for v in values
        if isinstance(v, float | Decimal) and not isinstance(v, bool) and math.isfinite(v)
    ]
    if column.endswith("rate"):
        return lambda value: _format(value, percent=True)
    smallest = min((abs(v) for v in fractions if v), default=1.0)
    decimals = min(MAX_DECIMALS, max(0, SIGNIFICANT - 1 - math.floor(math.log10(smallest))))
    return lambda value: _format(value, decimals=decimals)


def _format(value: Any, *, decimals: int = 0, percent: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | Decimal):
        number = float(value)
        if not math.isfinite(number):
            return str(number)
        return f"{number:.1%}" if percent else f"{number:,.{decimals}f}"
    if isinstance(value, timedelta):
        return str(timedelta(seconds=round(value.total_seconds())))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list):
        return ", ".join(map(str, value))
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
