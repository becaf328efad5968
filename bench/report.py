"""The figures as tables: stdout per level, a headline across levels, and ANALYTICS.md.

Everything is rendered from the results dict (the content of analytics.json), so the
report can be rebuilt from a saved run.
"""

from __future__ import annotations

from typing import Any

from . import findings, queries
from .data import FREQUENT_REPO
from .queries import key
from .sections import lat, level_tables
from .sections_sealing import sealing_tables
from .tables import Table, ms, ratio
from .timing import Measured


def measured(result: Measured) -> dict[str, Any]:
    return {
        "latency_ms": {k: v.as_dict() for k, v in result.latencies.items()},
        "loadavg": [result.loadavg_before, result.loadavg_after],
        "seconds": result.seconds,
    }


def level_text(level: dict[str, Any]) -> str:
    tables = [*level_tables(level), *sealing_tables(level)]
    return "\n\n".join(t.text() for t in tables) + "\n"


# -- across levels ---------------------------------------------------------------------


def headline(results: dict[str, Any]) -> Table:
    t = Table(
        [
            "rows",
            "call (all repos)",
            "fresh=False p50",
            "fresh=True p50",
            "direct p50",
            "direct/fresh=False",
            "direct/fresh=True",
            "refresh (recent parts) s",
            "seal advance s",
        ]
    )
    t.title = "Headline: p50 latency in ms, through the public async API"
    for level in results["levels"]:
        for method in queries.METHODS:
            views, fresh, direct = (
                lat(level, method, "all", m) for m in ("fresh=False", "fresh=True", "direct")
            )
            t.add(
                f"{level['rows']:,}",
                queries.API_CALLS[method],
                ms(views["p50"]),
                ms(fresh["p50"]),
                ms(direct["p50"]),
                ratio(direct["p50"] / views["p50"]),
                ratio(direct["p50"] / fresh["p50"]),
                f"{level['refresh']['median_wall_seconds']:.2f}",
                _seal_seconds(level),
            )
    return t


def _seal_seconds(level: dict[str, Any]) -> str:
    sealing = level.get("sealing")
    return f"{sealing['seal_advance']['median_wall_seconds']:.2f}" if sealing else "-"


def summary(previous: dict[str, Any], path: Any) -> dict[str, Any]:
    """The p50s of a previous run, kept with this one's results for the comparison."""
    return {
        "path": str(path),
        "library": previous["library"],
        "generated_at": previous["generated_at"],
        "p50_ms": {
            str(level["rows"]): {
                name: lat["p50"]
                for section in ("api", "direct")
                for name, lat in level[section]["latency_ms"].items()
            }
            for level in previous["levels"]
        },
    }


def comparison(results: dict[str, Any]) -> Table | None:
    previous = results.get("previous")
    if not previous:
        return None
    lib = previous["library"]
    t = Table(["rows", "case", f"before ({lib['commit']}) p50 ms", "now p50 ms", "before/now"])
    t.title = (
        f"Compared with the run of {previous['generated_at']} (orb-learning {lib['version']}, "
        f"commit {lib['commit']}, `{previous['path']}`)"
    )
    for level in results["levels"]:
        before = previous["p50_ms"].get(str(level["rows"]), {})
        for scope in ("all", "repo"):
            for method in queries.METHODS:
                for mode in ("fresh=False", "fresh=True", "direct"):
                    name = key(method, scope, mode)
                    if name in before:
                        now = lat(level, method, scope, mode)["p50"]
                        t.add(
                            f"{level['rows']:,}",
                            name,
                            ms(before[name]),
                            ms(now),
                            ratio(before[name] / now),
                        )
    t.note = (
        "Two runs at different times on a shared machine: only large ratios mean something "
        "(the load average is in each run's tables)."
    )
    return t


def headline_text(results: dict[str, Any]) -> str:
    return headline(results).text() + "\n"


def markdown(results: dict[str, Any]) -> str:
    m, lib, srv, par = (
        results["machine"],
        results["library"],
        results["server"],
        results["parameters"],
    )
    settings = ", ".join(f"{k}={v}" for k, v in srv["settings"].items())
    lines = [
        "# Benchmark results: analytics and the view refresh job",
        "",
        f"Generated {results['generated_at']} by `python bench/run.py "
        + " ".join(f"--rows {r}" for r in par["rows"])
        + f" --calls {par['calls']}"
        + (f" --compare {results['previous']['path']}" if results.get("previous") else "")
        + "` (see `bench/README.md`).",
        "",
        "## Machine",
        "",
        f"- `{m['uname']}`",
        f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory']}",
        f"- {m['python']}; orb-learning {lib['version']} (commit {lib['commit']}"
        + (
            ", with uncommitted changes in the library"
            if lib["uncommitted_library_changes"]
            else ""
        )
        + ")",
        f"- {srv['version']}; pgvector {srv['pgvector']}",
        f"- Server: {par['server']}, default settings: {settings}",
        "",
        "## Parameters",
        "",
        f"- Levels: {', '.join(f'{r:,}' for r in par['rows'])} rows, loaded with "
        "`store_executions` "
        f"in batches of {par['batch']:,} with precomputed clustered unit vectors (no model); "
        "records from `orb_learning.sample.generate` (8 task types, 3 tiers, 4 pools, "
        "22 solution summaries, a year of timestamps, busier lately) with the repo redrawn "
        "from 20 repos, Zipf-like (rank k has weight 1/k; the sample itself has 6).",
        "- The HNSW index is dropped before loading: this benchmark does not search. "
        "`VACUUM (ANALYZE) executions` after loading (VACUUM too, so that autovacuum does "
        "not start during the measurements).",
        "- Refresh: one `orb_learning_refresh_views()` after the load (it fills the views "
        f"and seals the history), then {par['refresh_runs']} timed ones (the periodic "
        "refresh: recent parts only); then `ANALYZE` of the materialized views, as "
        "autovacuum does within a minute of the first refresh. At the end of the level, "
        f"{par['refresh_runs']} timed seal advances (see its table), a late row, and the "
        "triggers' cost on `store_executions`.",
        f"- Live tail: after the refresh, {par['tail_fraction']:.1%} of the rows are stored "
        "stamped within the last minute, so `fresh=True` has rows to add.",
        "- API calls go through one `LearningDatabase` (default pool of 4, calls one at a "
        "time). Direct aggregates and what-if statements run on plain asyncpg connections; "
        "the what-ifs with `plan_cache_mode = force_custom_plan`.",
        f"- Latency: {par['warmup_calls']} warm-up calls per case (3 when a call takes over "
        f"100 ms), then up to {par['calls']} timed calls per case, interleaved round-robin "
        "across the cases of a table; a case that would take over "
        f"{par['budget_seconds_per_case']:.0f} s "
        f"gets fewer calls, never under 20. Direct aggregates: {par['direct_calls']} calls. "
        "(n) in the tables is the number of timed calls.",
        f"- Windows: `days_back={queries.TIER_DAYS}` (tier), "
        f"`days_back={queries.POOL_DAYS}` (pool), "
        f"`min_usage={queries.MIN_USAGE}, limit={queries.LIMIT}` (patterns); the frequent repo is "
        f"`{FREQUENT_REPO}` (~28% of rows).",
        "",
        "## What this shows",
        "",
        *findings.paragraphs(results),
        "",
        "## Headline",
        "",
        headline(results).markdown(level=3).split("\n", 2)[2],
        "",
    ]
    compared = comparison(results)
    if compared is not None:
        lines += [compared.markdown(level=2), ""]
    for level in results["levels"]:
        lines += [f"## {level['rows']:,} rows", ""]
        tables = [*level_tables(level), *sealing_tables(level)]
        lines += [t.markdown(level=3) + "\n" for t in tables]
    return "\n".join(lines)
