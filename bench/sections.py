"""The tables of one level, rendered from its part of the results dict."""

from __future__ import annotations

from typing import Any

from . import queries
from .data import FREQUENT_REPO
from .plans import describe
from .queries import CUSTOM, key
from .sections_indexes import tail_tables, view_index_table
from .tables import Table, ms, p50_p95, ratio, size

SCOPE_LABELS = {"all": "all repos", "repo": f"repo={FREQUENT_REPO}"}
TARGET_ROWS = 1_000_000
TARGETS_MS = {"fresh=False": 5.0, "fresh=True": 20.0}
PROJECTIONS_MS = {  # the first version's projections, by rows
    "tier": {1_000: 5.0, 100_000: 10.0, 1_000_000: 20.0},
    "patterns": {1_000: 10.0, 100_000: 20.0, 1_000_000: 50.0},
}


def lat(level: dict[str, Any], method: str, scope: str, mode: str) -> dict[str, float]:
    section = level["direct"] if mode == "direct" else level["api"]
    latency: dict[str, float] = section["latency_ms"][key(method, scope, mode)]
    return latency


# -- per level -------------------------------------------------------------------------


def load_table(level: dict[str, Any]) -> Table:
    n = level["rows"]
    load = level["load"]
    t_load = Table(
        ["rows", "batch", "generate s", "store_executions s", "rows/s", "VACUUM ANALYZE s"]
    )
    t_load.title = f"{n:,} rows: load (side figure)"
    t_load.add(
        f"{n:,}",
        f"{load['batch']:,}",
        f"{load['generate_seconds']:.1f}",
        f"{load['store_seconds']:.1f}",
        f"{load['rows_per_second']:,.0f}",
        f"{load['vacuum_analyze_seconds']:.1f}",
    )
    return t_load


def refresh_table(level: dict[str, Any]) -> Table:
    n = level["rows"]
    refresh = level["refresh"]
    runs = len(refresh["runs_seconds"])
    t_refresh = Table(["view", "rows", "first refresh s", f"median of {runs} s", "each run s"])
    t_refresh.title = f"{n:,} rows: orb_learning_refresh_views() (finished_at - started_at)"
    for view, first in refresh["initial_seconds"].items():
        # a history part (revision 0007) is left alone by the periodic refreshes: "sealed"
        each = ", ".join(f"{r[view]:.2f}" for r in refresh["runs_seconds"] if view in r)
        median = refresh["median_seconds"].get(view)
        t_refresh.add(
            view,
            f"{refresh['view_rows'][view]:,}",
            f"{first:.2f}",
            "sealed" if median is None else f"{median:.2f}",
            each or "sealed",
        )
    t_refresh.add(
        "total (client wall time)",
        "",
        f"{refresh['initial_wall_seconds']:.2f}",
        f"{refresh['median_wall_seconds']:.2f}",
        ", ".join(f"{w:.2f}" for w in refresh["run_wall_seconds"]),
    )
    return t_refresh


def api_table(level: dict[str, Any]) -> Table:
    n = level["rows"]
    t_api = Table(
        [
            "call",
            "scope",
            "fresh=False p50/p95 (n)",
            "fresh=True p50/p95 (n)",
            "direct p50/p95 (n)",
            "direct/fresh=False",
            "direct/fresh=True",
        ]
    )
    t_api.title = (
        f"{n:,} rows: latency in ms through the public async API, and the direct aggregate"
    )
    for method in queries.METHODS:
        for scope in ("all", "repo"):
            views, fresh, direct = (
                lat(level, method, scope, m) for m in ("fresh=False", "fresh=True", "direct")
            )
            t_api.add(
                queries.API_CALLS[method],
                SCOPE_LABELS[scope],
                p50_p95(views),
                p50_p95(fresh),
                p50_p95(direct),
                ratio(direct["p50"] / views["p50"]),
                ratio(direct["p50"] / fresh["p50"]),
            )
    tail = max(level["live_tail_rows"].values())
    api_load, direct_load = level["api"]["loadavg"], level["direct"]["loadavg"]
    t_api.note = (
        f"Live tail: {tail} rows (the extra batch of {level['tail_batch']} stamped within the last"
        f" minute). Load average 1 min: {api_load[0]:.2f} -> {api_load[1]:.2f} during the API"
        f" calls, {direct_load[0]:.2f} -> {direct_load[1]:.2f} during the direct ones."
    )
    return t_api


def plan_cache_table(level: dict[str, Any]) -> Table:
    t = Table(
        ["call", "scope", "API fresh=True p50/p95 (n)", "same SQL, custom plans", "API/custom"]
    )
    t.title = f"{level['rows']:,} rows: the plan cache (timed in the same rounds as the API)"
    for method in queries.METHODS:
        for scope in ("all", "repo"):
            api = lat(level, method, scope, "fresh=True")
            custom = lat(level, method, scope, CUSTOM)
            t.add(
                queries.API_CALLS[method],
                SCOPE_LABELS[scope],
                p50_p95(api),
                p50_p95(custom),
                ratio(api["p50"] / custom["p50"]),
            )
    counts = "; ".join(
        f"{r['statement']}: {r['generic_plans']} generic, {r['custom_plans']} custom"
        for r in level.get("plan_cache", [])
    )
    t.note = (
        "custom plans: the statements of an API fresh=True call, captured and replayed "
        "(outside the library's transaction, if any) on a connection with "
        "plan_cache_mode = force_custom_plan. Plans chosen on the pooled connection the API "
        f"calls reused: {counts or 'not recorded'}."
    )
    return t


def agreement_table(level: dict[str, Any]) -> Table:
    n = level["rows"]
    t_agree = Table(
        [
            "call / scope",
            "fresh=True = direct",
            "fresh=False = direct",
            "rows counted (direct)",
            "rows counted (fresh=False)",
        ]
    )
    t_agree.title = f"{n:,} rows: do the answers agree with the base table? (counts per group)"
    for name, row in level["agreement"].items():
        t_agree.add(
            name,
            _yes(row["fresh_true_equals_direct"]),
            _yes(row["fresh_false_equals_direct"]),
            f"{row['direct_rows_counted']:,}",
            f"{row['fresh_false_rows_counted']:,}",
        )
    return t_agree


def plans_table(level: dict[str, Any]) -> Table:
    n = level["rows"]
    t_plans = Table(["call (all repos)", "statements per call", "EXPLAIN ANALYZE ms", "scans"])
    t_plans.title = f"{n:,} rows: plans of the API's aggregate statement (captured from a call)"
    for name, plan in level["plans"].items():
        t_plans.add(
            name,
            str(plan.get("statements_per_call", 1)),
            ms(plan["execution_ms"]),
            "; ".join(describe(s) for s in plan["scans"]),
        )
    estimates = level.get("tail_estimates", {})
    if estimates:
        t_plans.note = "Rows the planner expects after the live tail's bound (serial plan): " + (
            "; ".join(
                f"{name}: {e['estimated']:,.0f} estimated, {e['actual']:,.0f} actual"
                for name, e in estimates.items()
            )
        )
    return t_plans


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def targets_tables(level: dict[str, Any]) -> list[Table]:
    n = level["rows"]
    scope_note = "" if n == TARGET_ROWS else " (the targets are set for 1,000,000 rows)"
    t = Table(["call (all repos)", "mode", "p50 ms", "target ms", "verdict"])
    t.title = f"{n:,} rows: targets{scope_note}"
    for method in queries.METHODS:
        for mode, target in TARGETS_MS.items():
            p50 = lat(level, method, "all", mode)["p50"]
            t.add(
                queries.API_CALLS[method],
                mode,
                ms(p50),
                f"< {target:.0f}",
                "pass" if p50 < target else "FAIL",
            )
        direct = lat(level, method, "all", "direct")["p50"]
        t.add(
            queries.API_CALLS[method],
            "direct",
            ms(direct),
            "hundreds",
            "yes" if direct >= 100 else "no: under 100 ms",
        )
    tables = [t]
    if any(n in by_rows for by_rows in PROJECTIONS_MS.values()):
        p = Table(
            [
                "call (all repos)",
                "first version's projection ms",
                "ours fresh=False p50",
                "ratio",
                "ours fresh=True p50",
                "ratio",
            ]
        )
        p.title = f"{n:,} rows: against the first version's projections (ours / projection)"
        for method, by_rows in PROJECTIONS_MS.items():
            if n in by_rows:
                views = lat(level, method, "all", "fresh=False")["p50"]
                fresh = lat(level, method, "all", "fresh=True")["p50"]
                projected = by_rows[n]
                p.add(
                    queries.API_CALLS[method],
                    ms(projected),
                    ms(views),
                    ratio(views / projected),
                    ms(fresh),
                    ratio(fresh / projected),
                )
        tables.append(p)
    return tables


def size_tables(level: dict[str, Any]) -> list[Table]:
    s = level["sizes"]
    t = Table(["relation", "bytes", "bytes per execution row"])
    t.title = f"{level['rows']:,} rows: sizes after the load (HNSW index dropped)"
    rows = s["rows"]
    for part in ("heap", "toast_and_maps", "indexes", "total"):
        t.add(f"executions {part}", size(s["table"][part]), f"{s['bytes_per_row'][part]:.0f}")
    for name, index in s["indexes"].items():
        t.add(
            f"  index {name} ({index['method']})", size(index["bytes"]), f"{index['per_row']:.1f}"
        )
    for view, v in s["views"].items():
        t.add(f"view {view} ({v['rows']:,} rows)", size(v["total"]), f"{v['total'] / rows:.1f}")
    return [t]


def level_tables(level: dict[str, Any]) -> list[Table]:
    """Every table of one level, in the order of the report."""
    return [
        load_table(level),
        refresh_table(level),
        api_table(level),
        plan_cache_table(level),
        *targets_tables(level),
        agreement_table(level),
        plans_table(level),
        *tail_tables(level),
        *([view_index_table(level)] if level.get("view_indexes") else []),
        *size_tables(level),
    ]
