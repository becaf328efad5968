"""The "what this shows" paragraphs, written from the figures of the run (so that they stay
true when the benchmark is run again on another machine)."""

from __future__ import annotations

import statistics
from typing import Any

from . import queries
from .capture import PARAM
from .data import FREQUENT_REPO
from .findings_indexes import index_choice, variant, view_indexes
from .plans import describe
from .queries import CUSTOM, key
from .tables import ms, ratio

Level = dict[str, Any]


def _p50(level: Level, method: str, mode: str, scope: str = "all") -> float:
    section = level["direct"] if mode == "direct" else level["api"]
    value: float = section["latency_ms"][key(method, scope, mode)]["p50"]
    return value


def _trio(level: Level, mode: str, scope: str = "all") -> str:
    return "/".join(ms(_p50(level, m, mode, scope)) for m in queries.METHODS)


def _targets(level: Level) -> str:
    n = level["rows"]
    views_ok = all(_p50(level, m, "fresh=False") < 5 for m in queries.METHODS)
    fresh_ok = all(_p50(level, m, "fresh=True") < 20 for m in queries.METHODS)
    return (
        f"**{n:,} rows.** p50 of tier/pool/patterns, all repos: fresh=False "
        f"{_trio(level, 'fresh=False')} ms ({'all' if views_ok else 'not all'} under the 5 ms "
        f"target), fresh=True {_trio(level, 'fresh=True')} ms ({'all' if fresh_ok else 'not all'}"
        f" under the 20 ms target), direct aggregate on the base table "
        f"{_trio(level, 'direct')} ms. For the frequent repo: fresh=False "
        f"{_trio(level, 'fresh=False', 'repo')} ms, fresh=True {_trio(level, 'fresh=True', 'repo')}"
        f" ms, direct {_trio(level, 'direct', 'repo')} ms."
        + ("" if n == 1_000_000 else " (The targets are set for 1,000,000 rows.)")
    )


def _tail(level: Level) -> str:
    plan = level["plans"][key("tier", "all", "fresh=True")]
    tail = [s for s in plan["scans"] if s["relation"] == "executions"]
    if not tail:
        return ""
    scan = tail[0]
    rows = max(level["live_tail_rows"].values())
    statements = plan.get("statements_per_call", 1)
    if "Seq Scan" not in scan["node"]:
        return (
            f"**The live tail** ({rows:,} rows) is read by {describe(scan)}; a fresh=True "
            f"call runs {statements} statement{'s' if statements > 1 else ''}. Extra cost of "
            "fresh=True over fresh=False, p50 all repos: "
            + ", ".join(
                f"{m} {ms(_p50(level, m, 'fresh=True') - _p50(level, m, 'fresh=False'))} ms"
                for m in queries.METHODS
            )
            + "."
        )
    loaded = variant(level, "btree", "as loaded")
    assert loaded is not None
    pairs = ", ".join(
        f"{m} {ms(loaded['latency_ms'][key(m, 'all', 'fresh=True')]['p50'])} -> "
        f"{ms(loaded['latency_ms'][key(m, 'all', PARAM)]['p50'])} ms"
        for m in queries.METHODS
    )
    under = all(loaded["latency_ms"][key(m, "all", PARAM)]["p50"] < 20 for m in queries.METHODS)
    estimates = level.get("tail_estimates", {})
    library = estimates.get("sub-select (as the library)")
    param = estimates.get("parameter (what-if)")
    estimate = (
        f" (for the tail's bound alone it estimates {library['estimated']:,.0f} rows, with "
        f"the watermark as a parameter {param['estimated']:,.0f}; there are "
        f"{library['actual']:,.0f})"
        if library and param
        else ""
    )
    text = (
        f"**fresh=True scans the whole table.** The live tail holds {rows:,} rows, yet the "
        f"tier statement reads it with a {scan['node']} of `executions` "
        f"({scan['removed']:,} rows filtered out, {scan['ms']:.0f} ms in EXPLAIN ANALYZE), "
        "not through `idx_executions_timestamp` as documented. The bound "
        "`greatest(<window start>, (SELECT watermark FROM view_watermarks ...))` is not known "
        "when the statement is planned, so the planner takes the default selectivity of an "
        f"inequality, a third of the table{estimate}. So fresh=True costs a scan of the "
        "history on every call, and grows with the table, not with the tail. The same "
        "statement with the watermark read first and passed as a parameter (what-if: two "
        "round trips, custom plans) reads the tail by "
        f"{describe(loaded['tail_scans'][key('tier', 'all', PARAM)])}; fresh=True p50 "
        f"goes {pairs} ({'all' if under else 'not all'} under the 20 ms target)."
    )
    clustered = variant(level, "btree", "clustered")
    if clustered:
        api_scan = clustered["tail_scans"][key("tier", "all", "fresh=True")]
        text += (
            f" With the heap in time order (after CLUSTER, correlation "
            f"{clustered['timestamp_correlation']:.2f}), the library's statement does use the "
            f"btree ({describe(api_scan)}), since a correlated index looks cheap even for a "
            f"third of the table; tier fresh=True p50 is then "
            f"{ms(clustered['latency_ms'][key('tier', 'all', 'fresh=True')]['p50'])} ms "
            "through the API and "
            f"{ms(clustered['latency_ms'][key('tier', 'all', PARAM)]['p50'])}"
            " ms with the parameter. An append-only telemetry table is close to time order; "
            "one filled by an import or a backfill is not."
        )
    return text


def _plan_cache(level: Level) -> str:
    generic = [r["statement"] for r in level.get("plan_cache", []) if r["generic_plans"] > 0]
    slow, overheads = [], []
    for method in queries.METHODS:
        for scope in ("all", "repo"):
            api = _p50(level, method, "fresh=True", scope)
            custom = level["api"]["latency_ms"][key(method, scope, CUSTOM)]["p50"]
            overheads.append(api - custom)
            if api > 2 * custom + 1:
                slow.append(f"{method} ({scope}) {ms(api)} ms against {ms(custom)} ms")
    order = level.get("plan_cache_order_ms")
    if not generic:
        return (
            f"**No generic plans.** The pooled connection ran only custom plans for the "
            f"analytics{_order_sentence(order)}. A call costs {ms(min(overheads))}-"
            f"{ms(max(overheads))} ms more (p50) than replaying its statements on a plain "
            "connection: the price of its read-only repeatable-read transaction (BEGIN, "
            "SET LOCAL, the bounds, the aggregate, COMMIT: five round trips instead of two)."
        )
    if not slow:
        return ""
    return (
        f"**The plan cache.** At {level['rows']:,} rows the API's fresh=True statement is much "
        "slower than the same statement run with custom plans only: "
        + "; ".join(slow)
        + f" (p50, timed in the same rounds). The pooled connection ran generic plans for: "
        f"{', '.join(generic)}. asyncpg prepares each statement; after five executions "
        "PostgreSQL may keep a generic plan, and in a generic plan the filter "
        "`($1::text IS NULL OR repo = $1::text)` cannot use an index, so a repo-filtered call "
        "made after unfiltered ones scans the table. Which plan sticks depends on the order "
        f"of the first calls on each connection{_order_sentence(order)}. The analytics do "
        "not set `plan_cache_mode = force_custom_plan`, which the library's search does."
    )


def _order_sentence(order: dict[str, float] | None) -> str:
    if not order:
        return ""
    return (
        f" (on a one-connection pool, solution patterns for `{FREQUENT_REPO}` take "
        f"{ms(order['repo calls first'])} ms p50 when those calls come first, "
        f"{ms(order['after unfiltered calls'])} ms after twelve unfiltered calls)"
    )


def _direct(level: Level) -> str:
    parts = [
        f"{m} {ratio(_p50(level, m, 'direct') / _p50(level, m, 'fresh=False'))} / "
        f"{ratio(_p50(level, m, 'direct') / _p50(level, m, 'fresh=True'))}"
        for m in queries.METHODS
    ]
    return (
        f"**The views against no views.** At {level['rows']:,} rows the direct aggregate over "
        f"the base rows takes, relative to fresh=False / fresh=True (p50, same run, all "
        f"repos): {', '.join(parts)}."
        + (
            " The views pay off for fresh=False; fresh=True, as it stands, is about as slow "
            "as not having them."
            if all(
                _p50(level, m, "direct") < 2 * _p50(level, m, "fresh=True") for m in queries.METHODS
            )
            else ""
        )
    )


def _buckets(level: Level) -> str:
    reads = []
    for m in ("tier", "pool"):
        scans = level["plans"][key(m, "all", "fresh=False")]["scans"]
        reads.append(f"{m} {', '.join(describe(s) for s in scans)}")
    return (
        f"**fresh=False at {level['rows']:,} rows** sums the view rows of the window. Over "
        "all repos those come from the rollups (revision 0005), one per tier, task type and "
        "day (tier_performance_all_repos_mv) or per pool and hour "
        "(pool_performance_all_repos_mv); for one repo from the per-repo views: "
        + "; ".join(reads)
        + ". Hence, over all repos, "
        f"{ms(_p50(level, 'tier', 'fresh=False'))} / {ms(_p50(level, 'pool', 'fresh=False'))} ms "
        f"p50; for one repo {ms(_p50(level, 'tier', 'fresh=False', 'repo'))} / "
        f"{ms(_p50(level, 'pool', 'fresh=False', 'repo'))} ms. Solution patterns have a few "
        f"hundred rows: {ms(_p50(level, 'patterns', 'fresh=False'))} ms."
    )


def _refresh(levels: list[Level]) -> str:
    parts = []
    for level in levels:
        r = level["refresh"]
        views = ", ".join(
            f"{v.removesuffix('_mv')} {s:.2f} s" for v, s in r["median_seconds"].items()
        )
        sealing = level.get("sealing")
        seal = ""
        if sealing:
            advance = sealing["seal_advance"]
            seal = (
                f"; the daily seal advance {advance['median_wall_seconds']:.2f} s, the "
                f"refresh after a late row {advance['late_row']['wall_seconds']:.2f} s"
            )
        parts.append(
            f"{level['rows']:,} rows: {r['median_wall_seconds']:.2f} s ({views}; the first "
            f"refresh after the load {r['initial_wall_seconds']:.2f} s{seal})"
        )
    return (
        "**Refresh job** (revision 0007: sealed history), median of the periodic refreshes: "
        + "; ".join(parts)
        + ". A periodic refresh rebuilds only the recent parts (executions from the seal, the "
        "start of the UTC day two days back, to the watermark) and their rollups; the "
        "history parts are rebuilt when the seal moves (once a day) or when a statement "
        "wrote executions before it (the trigger's mark), so that refresh follows the "
        "history's size while the periodic one follows the last two to three days."
        + _heap_order(levels)
        + _trigger_cost(levels)
    )


def _recent_seconds(runs: list[dict[str, float]]) -> float:
    return statistics.median(
        sum(s for view, s in run.items() if "_recent_" in view) for run in runs
    )


def _heap_order(levels: list[Level]) -> str:
    """The recent parts read a few days of rows through the timestamp index: scattered on
    the benchmark's heap as loaded, contiguous once it is in time order (CLUSTER, done by
    the live-tail experiment before the seal advances are timed)."""
    big = levels[-1]
    if not big.get("sealing"):
        return ""
    loaded = _recent_seconds(big["refresh"]["runs_seconds"])
    clustered = _recent_seconds([r["seconds"] for r in big["sealing"]["seal_advance"]["runs"]])
    return (
        f" At {big['rows']:,} rows the recent parts took {loaded:.2f} s together in the "
        "periodic refreshes, on the heap as loaded (rows in random time order, so the few "
        f"days they read are scattered over the table), and {clustered:.2f} s in the seal "
        "advances, timed after the live-tail experiment's CLUSTER by timestamp (a table "
        "written as time goes is in that order)."
    )


def _trigger_cost(levels: list[Level]) -> str:
    parts = []
    for level in levels:
        cost = (level.get("sealing") or {}).get("trigger_cost")
        if cost:
            m = cost["median_ms"]
            parts.append(
                f"{level['rows']:,} rows: {m['recent rows, triggers']:.0f} / "
                f"{m['recent rows, no triggers']:.0f} ms (rows of the last hour), "
                f"{m['rows 10 days back, triggers']:.0f} / "
                f"{m['rows 10 days back, no triggers']:.0f} ms (10 days back, marking the "
                "history)"
            )
    if not parts:
        return ""
    return (
        " **The history triggers** on `store_executions` of 1,000 rows, median with / "
        "without them: " + "; ".join(parts) + ". With 5 batches per case the differences "
        "change sign between cases and levels, and the largest is not matched by the rows "
        "10 days back, which do the same capture and more: noise of this machine, not a "
        "measured cost (a run of 25 batches per case on 100,000 rows, outside this report, "
        "gave 73.2 / 74.4 and 74.8 / 72.9 ms)."
    )


def _load(levels: list[Level]) -> str:
    rates = ", ".join(
        f"{level['load']['rows_per_second']:,.0f} rows/s at {level['rows']:,}" for level in levels
    )
    return (
        f"**Load** (side figure, `store_executions` with precomputed vectors, batches of "
        f"{levels[0]['load']['batch']:,}, no HNSW index): {rates}."
    )


def _noise(levels: list[Level], cores: int) -> str:
    loads = [x for level in levels for x in (*level["api"]["loadavg"], *level["direct"]["loadavg"])]
    spreads = [
        lat["p95"] / lat["p50"]
        for level in levels
        for lat in level["api"]["latency_ms"].values()
        if lat["p50"] > 0
    ]
    return (
        f"**Noise.** The 1-minute load average ranged {min(loads):.2f}-{max(loads):.2f} "
        f"during the timed phases on this {cores}-core machine (above 1, other work competed "
        f"for the cores); p95/p50 of the API cases has a median of "
        f"{statistics.median(spreads):.2f} (max {max(spreads):.2f}). Cases in one table were "
        "timed interleaved, so their ratios hold better than their absolute values; the index "
        "variants were timed minutes apart and carry more noise (differences under about "
        "25% between them are not significant)."
    )


def paragraphs(results: dict[str, Any]) -> list[str]:
    levels: list[Level] = results["levels"]
    if not levels:
        return ["(no level finished)"]
    out: list[str] = []
    for level in levels:
        out += [_targets(level), ""]
    biggest = max(levels, key=lambda level: level["rows"])
    texts = (
        _tail(biggest),
        _plan_cache(biggest),
        _direct(biggest),
        _buckets(biggest),
        view_indexes(levels),
        index_choice(biggest),
        _refresh(levels),
        _load(levels),
        _noise(levels, results["machine"]["cores"]),
    )
    for text in texts:
        if text:
            out += [text, ""]
    return out[:-1]
