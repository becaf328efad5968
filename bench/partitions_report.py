"""The partitions part's figures as summary lines and a page table (:mod:`bench.partitions`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .tables import Table, count, ms, p50_p95, ratio, recall

Line = tuple[str, str, float | None, float | None]
"""(figure, text, key for comparisons, reference p50 ms)."""


def _ref(group: dict[str, Any]) -> float | None:
    reference: float | None = (group.get("reference") or {}).get("p50")
    return reference


def lines(level: dict[str, Any]) -> Iterator[Line]:
    """The summary's lines: search per window, ingest, retention, storage, conversion."""
    found = level["search"]
    for window in ("7 days", "30 days", "90 days", "all"):
        table, parts = (found["cases"][f"{k}, {window}"] for k in ("table", "partitions"))
        recalls = (found["recall"][f"{k}, {window}"] for k in ("table", "partitions"))
        yield (
            f"partitions: search p50 ms one table / partitions (ratio; recall@10), {window}",
            f"{ms(table['p50'])} / {ms(parts['p50'])} ({ratio(parts['p50'] / table['p50'])}; "
            + " / ".join(recall(r) for r in recalls)
            + ")",
            parts["p50"] / table["p50"],
            _ref(found),
        )
    rate = level["ingest"]["rows_per_second"]
    yield (
        "partitions: ingest rows/s, HNSW maintained, one table / partitions",
        f"{count(rate['table'])} / {count(rate['partitions'])}",
        rate["partitions"] / rate["table"],
        _ref(level["ingest"]),
    )
    kept = level["retention"]
    yield (
        "partitions: retention of the oldest month s, one table / partitions (archive included)",
        f"{ms(kept['table']['seconds'])} / {ms(kept['partitions']['seconds'])}",
        kept["partitions"]["seconds"],
        _ref(kept),
    )
    storage = level["storage"]
    yield (
        "partitions: bytes per row, one table / partitions (+ execution_keys)",
        f"{count(storage['table_bytes_per_row'])} / {count(storage['partitions_bytes_per_row'])}"
        f" (+{count(storage['execution_keys_bytes_per_row'])})",
        storage["partitions_bytes_per_row"],
        None,
    )
    converted = level["conversion"]
    yield (
        "partitions: conversion of the table s (rows/s), db partitions --convert",
        f"{ms(converted['seconds'])} ({count(converted['rows_per_second'])})",
        converted["seconds"],
        None,
    )


def table(level: dict[str, Any]) -> Table:
    """Search per window on both, with the plan the HNSW statement got on the partitions."""
    found, plans, held = level["search"], level["plans"], level["partitions"]
    out = Table(
        ["days_back", "one table p50 / p95 ms", "partitions p50 / p95 ms", "ratio",
         "recall@10 table / partitions", "partitions' plan: HNSW scans / sorts"],
        title=f"Time partitions against one table at {count(level['rows'])} rows",
        note=f"{held['holding_rows']} partitions hold rows ({count(held['smallest_rows'])} to "
        f"{count(held['largest_rows'])} each; {count(held['default_rows'])} in the default "
        f"one). The same queries through the library's search function, both databases in "
        f"the same rounds; reference {ms(_ref(found))} ms. Retention: "
        + _retention_text(level["retention"]),
    )  # fmt: skip
    for window in ("7 days", "30 days", "90 days", "all"):
        table_case, parts_case = (found["cases"][f"{k}, {window}"] for k in ("table", "partitions"))
        out.add(
            window,
            p50_p95(table_case),
            p50_p95(parts_case),
            ratio(parts_case["p50"] / table_case["p50"]),
            " / ".join(recall(found["recall"][f"{k}, {window}"]) for k in ("table", "partitions")),
            f"{plans[window]['hnsw_index_scans']} / {plans[window]['sorts']}",
        )
    return out


def _retention_text(kept: dict[str, Any]) -> str:
    parts, flat = kept["partitions"], kept["table"]
    return (
        f"the library's retention with its Parquet archive; on the partitions "
        f"{ms(parts['seconds'])} s for {count(parts['deleted'])} rows "
        f"({', '.join(parts['partitions_dropped']) or 'no partition'} dropped with "
        f"{count(parts['partition_rows'])} rows, the rest deleted row by row, VACUUM "
        f"{ms(parts['vacuum_seconds'])} s); on the one table {ms(flat['seconds'])} s: delete and "
        f"archive {ms(flat['delete_seconds'])} s ({flat['share']:.2%} of the rows), HNSW "
        f"rebuild {ms(flat['rebuild_seconds'])} s, VACUUM {ms(flat['vacuum_seconds'])} s."
    )
