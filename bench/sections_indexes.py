"""The tables of the index experiments (see :mod:`indexes`)."""

from __future__ import annotations

from typing import Any

from . import queries
from .capture import PARAM
from .indexes import BRIN_ONLY
from .plans import describe
from .queries import key
from .tables import Table, ms, p50_p95, ratio, size


def tail_tables(level: dict[str, Any]) -> list[Table]:
    n = level["rows"]
    t = Table(
        [
            "index",
            "heap order",
            "corr.",
            "index size",
            "setup s",
            "call (all repos)",
            "API fresh=True",
            "param (what-if)",
            "BRIN only",
        ]
    )
    t.title = f"{n:,} rows: live-tail index, fresh=True p50 ms"
    t.note = (
        "API: through the public API. param: only for a library whose statement reads the "
        "watermark by a sub-select: the same statement with the watermark read first and "
        "passed as a parameter (two round trips, custom plans). BRIN only: the statements "
        "that expose the tail's bound (param, else the API's own, replayed) with the "
        "composite indexes that end with timestamp dropped in a rolled-back transaction, so "
        "that BRIN is the only index the tail can use. corr.: pg_stats correlation of "
        "timestamp (1 = heap in time order)."
    )
    plans = Table(["index", "heap order", "statement", "how the live tail is read"])
    plans.title = f"{n:,} rows: live-tail scans (EXPLAIN ANALYZE)"
    for v in level["tail_index"]:
        setup = ", ".join(f"{k} {s:.1f}" for k, s in v["setup_seconds"].items()) or "-"
        for method in queries.METHODS:
            cells = [
                ms(lat["p50"]) if (lat := v["latency_ms"].get(key(method, "all", mode))) else "-"
                for mode in ("fresh=True", PARAM, BRIN_ONLY)
            ]
            t.add(
                v["index"],
                v["heap_order"],
                f"{v['timestamp_correlation']:.3f}",
                size(v["index_bytes"]),
                setup,
                queries.API_CALLS[method].split("(")[0],
                *cells,
            )
            setup = ""
        for name, scan in v["tail_scans"].items():
            plans.add(v["index"], v["heap_order"], name, describe(scan))
    return [t, plans]


def view_index_table(level: dict[str, Any]) -> Table:
    w = level["view_indexes"]
    t = Table(["case (all repos)", "without p50/p95 (n)", "with p50/p95 (n)", "without/with"])
    origin = "as migrated" if w["in_schema"] else "created by the benchmark"
    t.title = (
        f"{level['rows']:,} rows: an index on tier_performance_mv(date) and "
        f"pool_performance_mv(hour) ({origin}), measured {w['order']}"
    )
    for name, without in w["without_ms"].items():
        with_ = w["with_ms"][name]
        t.add(name, p50_p95(without), p50_p95(with_), ratio(without["p50"] / with_["p50"]))
    sizes = ", ".join(f"{k} {size(v)}" for k, v in w["index_bytes"].items())
    scans = "; ".join(
        f"{state}: " + " | ".join(f"{m}: {text}" for m, text in by_method.items())
        for state, by_method in w["view_scans"].items()
    )
    t.note = f"Index sizes: {sizes}. How fresh=False reads the views, {scans}."
    if w["window_bound_ms"]:
        bound = ", ".join(f"{k}: {ms(v)} ms" for k, v in w["window_bound_ms"].items())
        t.note += (
            " The library's statement has the window's start in its filter; a 30-day count "
            f"over tier_performance_mv without the index (EXPLAIN ANALYZE, median of 5): {bound}."
        )
    return t
