"""SEARCH.md and the stdout tables of the search benchmark, rendered from search.json."""

from __future__ import annotations

from typing import Any

from .search_data import CASES
from .tables import Table, ms, p50_p95, ratio, size
from .timing import REFERENCE, REFERENCE_SQL

PROJECTED_SIMILAR = {1_000: 5.0, 100_000: 50.0, 1_000_000: 200.0}
PROJECTED_TIER = {1_000: 5.0, 100_000: 10.0, 1_000_000: 20.0}
"""The first version's projections (ms), which it never measured."""


def _hnsw_parameters(level: dict[str, Any]) -> str:
    hnsw = level.get("hnsw", {"m": 16, "ef_construction": 64})  # runs before it was recorded
    return f"m={hnsw['m']}, ef_construction={hnsw['ef_construction']}"


def _projection(table: dict[int, float], rows: int) -> float | None:
    return table.get(rows)


def _lat(level: dict[str, Any], section: str, name: str) -> dict[str, float] | None:
    latencies: dict[str, dict[str, float]] = level.get(section, {}).get("latency_ms", {})
    return latencies.get(name)


def _ratio(baseline: dict[str, float] | None, ours: dict[str, float] | None) -> str:
    if not baseline or not ours or ours["p50"] <= 0:
        return "-"
    return ratio(baseline["p50"] / ours["p50"])


def _reference(latencies: dict[str, Any] | None) -> str:
    """The machine reference's p50 in these rounds, for a table's note ('' in older runs)."""
    ref = (latencies or {}).get(REFERENCE)
    if not ref:
        return ""
    return f" Machine reference in the same rounds ({REFERENCE_SQL}): {ms(ref['p50'])} ms p50."


def _recall(value: float | None) -> str:
    return "n/a (empty)" if value is None else f"{value:.3f}"


def search_table(level: dict[str, Any]) -> Table:
    rows = level["rows"]
    t = Table(
        [
            "index",
            "case",
            "API p50 / p95 ms (calls)",
            "recall@10",
            "queries with fewer rows",
            "x PG exact",
            "x NumPy",
            "x DuckDB",
            "x projection",
        ],
        title=f"find_similar_executions at {rows:,} rows ({level['embeddings']})",
        note="Ratios: the baseline's p50 divided by the API's (higher: the API is faster). "
        f"Projection: the first version's {ms(PROJECTED_SIMILAR.get(rows, 0))} ms. "
        f"The library's index: {level['library_index']}."
        + _reference(level.get("api", {}).get("latency_ms")),
    )
    projected = _projection(PROJECTED_SIMILAR, rows)
    for precision, recall in level.get("recall", {}).items():
        for case in CASES:
            ours = _lat(level, "api", f"{precision} / {case}")
            t.add(
                precision,
                case,
                p50_p95(ours) if ours else "-",
                _recall(recall[case]["recall_at_10"]),
                f"{recall[case]['queries_with_fewer_rows']} of {recall[case]['queries']}",
                _ratio(_lat(level, "baselines", f"PostgreSQL exact / {case}"), ours),
                _ratio(_lat(level, "baselines", f"NumPy / {case}"), ours),
                _ratio(_lat(level, "baselines", f"DuckDB / {case}"), ours),
                ratio(projected / ours["p50"]) if projected and ours else "-",
            )
    return t


def baseline_table(level: dict[str, Any]) -> Table:
    t = Table(
        ["case", "rows passing", "PostgreSQL exact", "NumPy", "DuckDB", "same ids (NumPy, DuckDB)"],
        title=f"Exact baselines at {level['rows']:,} rows: p50 / p95 ms (calls)",
        note="PostgreSQL exact: index scans off (plans: "
        + "; ".join(f"{c}: {p}" for c, p in level.get("exact_plans", {}).items())
        + f"). DuckDB {level.get('duckdb', '?')}: array_cosine_similarity on FLOAT[384], "
        "in memory." + _reference(level.get("baselines", {}).get("latency_ms")),
    )
    for case in CASES:
        agreement = level["agreement"][case]
        cells = [
            p50_p95(x) if (x := _lat(level, "baselines", f"{engine} / {case}")) else "-"
            for engine in ("PostgreSQL exact", "NumPy", "DuckDB")
        ]
        t.add(
            case,
            f"{agreement['rows_passing_filters']:,}",
            *cells,
            f"{agreement['numpy_same_ids']}, {agreement['duckdb_same_ids']} "
            f"of {agreement['queries']}",
        )
    return t


def index_table(level: dict[str, Any]) -> Table:
    rows = level["rows"]
    relations = level["sizes"]["relations"]
    t = Table(
        [
            "HNSW index",
            "build s",
            "size",
            "bytes/row",
            "unfiltered p50",
            "frequent p50",
            "recall (unf., freq.)",
        ],
        title=f"The HNSW index at {rows:,} rows ({_hnsw_parameters(level)})",
        note="Built by the bulk path after the load (maintenance_work_mem 2GB, 2 parallel "
        "workers). Full against half precision, measured side by side before revision 0008 "
        "made the column half precision: bench/history/search-173196c/SEARCH.md.",
    )
    names = {level["library_index"]: "idx_executions_embedding_hnsw"}
    for precision in level["builds"]:
        names.setdefault(precision, f"bench_hnsw_{precision}")
    for precision, seconds in level["builds"].items():
        bytes_ = relations.get(names[precision], 0)
        recall = level.get("recall", {}).get(precision, {})
        t.add(
            precision,
            f"{seconds:.1f}",
            size(bytes_),
            f"{bytes_ / rows:,.0f}",
            ms(x["p50"]) if (x := _lat(level, "api", f"{precision} / unfiltered")) else "-",
            ms(x["p50"]) if (x := _lat(level, "api", f"{precision} / frequent repo")) else "-",
            ", ".join(
                _recall(recall.get(c, {}).get("recall_at_10"))
                for c in ("unfiltered", "frequent repo")
            ),
        )
    return t


def sweep_table(level: dict[str, Any]) -> Table:
    t = Table(
        [
            "index",
            "ef_search",
            "candidates/result",
            "recall unf.",
            "recall freq.",
            "p50 unf.",
            "p50 freq.",
            "reference p50",
        ],
        title=f"HNSW path tuning at {level['rows']:,} rows (recall@10 and p50 ms)",
        note="Candidates per result: the HNSW path fetches k x this many, sorts them by "
        "exact distance and keeps k. Points are fixed ef_search values; the library "
        "uses 100, doubled (half-precision distances), scaled by sqrt(table rows / "
        "100,000) above 100,000 rows (at most 1,000), 4 per result. Reference: the machine "
        f"reference ({REFERENCE_SQL}) timed in the same rounds as each point.",
    )
    for point in level.get("sweep", []):
        t.add(
            point["precision"],
            point["ef_search"],
            point["candidates_per_result"],
            _recall(point["recall"]["unfiltered"]),
            _recall(point["recall"]["frequent repo"]),
            ms(point["latency"]["unfiltered"]["p50"]),
            ms(point["latency"]["frequent repo"]["p50"]),
            ms(x["p50"]) if (x := point["latency"].get(REFERENCE)) else "-",
        )
    return t


def storage_table(level: dict[str, Any]) -> Table:
    sizes = level["sizes_library"]
    rows = sizes["rows"]
    t = Table(
        ["relation", "bytes", "bytes per row"],
        title=f"Storage at {rows:,} rows (the library's indexes only)",
        note=f"pg_total_relation_size('executions') = {size(sizes['total_bytes'])}: "
        f"{sizes['total_bytes_per_row']:,.0f} bytes per row, all included.",
    )
    for name, bytes_ in sizes["relations"].items():
        t.add(name, size(bytes_), f"{bytes_ / rows:,.0f}")
    return t


def ingest_table(level: dict[str, Any]) -> Table:
    bulk = level["bulk_load"]
    ingest = level["ingest"]
    single = ingest["single"]["latency_ms"]["store_execution"]
    t = Table(
        ["what", "figure"],
        title=f"Ingest at {level['rows']:,} rows",
        note="Embeddings precomputed (passed as embedding=/embeddings=): the model is not timed.",
    )
    t.add(
        "bulk load (orb_learning.bulk.bulk_load): COPY without the HNSW index",
        f"{bulk['copy_rows_per_second']:,.0f} rows/s ({bulk['copy_seconds']:.1f} s)",
    )
    t.add(f"bulk load: HNSW build ({bulk['index']})", f"{bulk['index_seconds']:.1f} s")
    t.add("bulk load: ANALYZE", f"{bulk['analyze_seconds']:.1f} s")
    t.add("bulk load: total, index included", f"{bulk['total_seconds']:.1f} s")
    t.add("store_execution, HNSW maintained: p50 / p95 ms (calls)", p50_p95(single))
    batch = ingest["batch"]
    t.add(
        f"store_executions, {batch['batch']:,} rows per call, HNSW maintained",
        f"{batch['rows_per_second']:,.0f} rows/s "
        f"({batch['rows']:,} rows in {batch['seconds']:.1f} s)",
    )
    return t


def tier_table(level: dict[str, Any]) -> Table:
    rows = level["rows"]
    projected = _projection(PROJECTED_TIER, rows)
    t = Table(
        ["call", "p50 / p95 ms (calls)", "x projection"],
        title=f"Tier aggregate (30 days, all repos) at {rows:,} rows",
        note=f"Projection: the first version's {ms(projected or 0)} ms for tier performance.",
    )
    for name, latency in level["tier"]["latency_ms"].items():
        t.add(name, p50_p95(latency), ratio(projected / latency["p50"]) if projected else "-")
    return t


def churn_table(level: dict[str, Any]) -> Table:
    churn = level["churn"]
    precision = level["library_index"]
    rebuild = (
        f"HNSW rebuild ({churn['rebuild_seconds']:.1f} s) then "
        if churn.get("rebuilt_index")
        else ""
    )
    t = Table(
        ["case", "recall before", "recall after", "p50 / p95 ms after (calls)"],
        title=f"Churn at {level['rows']:,} rows: {churn['inserted']:,} inserts "
        f"({churn['insert_seconds']:.0f} s), {churn['deleted']:,} deletes, "
        f"{rebuild}VACUUM ({churn['vacuum_seconds']:.1f} s)",
        note="Recall after: against a new exact search of the rows as they are after the "
        "cycle. After the deletes, the library's own step (orb_learning.reclaim, retention's "
        "last): a concurrent rebuild of the HNSW index when enough of the rows went (1% "
        "of them up to commit 564eba4; since a83bc6e, 1% up to 100,000 rows and less beyond: "
        "0.56% at a million), then VACUUM; the index was "
        f"{'' if churn.get('rebuilt_index') else 'not '}rebuilt here."
        + _churn_run(churn)
        + _reference(churn["api"]["latency_ms"]),
    )
    for case in CASES:
        before = churn.get("recall_before", level["recall"][precision])[case]["recall_at_10"]
        after = churn["recall"][case]["recall_at_10"]
        latency = churn["api"]["latency_ms"][f"{precision} / {case}"]
        t.add(case, _recall(before), _recall(after), p50_p95(latency))
    return t


def paths_table(level: dict[str, Any]) -> Table:
    t = Table(
        [
            "repo, window",
            "rows passing",
            "planner's estimate",
            "exact p50 ms",
            "HNSW p50 ms",
            "HNSW recall@10",
            "library's path",
        ],
        title=f"Exact path against HNSW path by rows passing the filter, {level['rows']:,} rows",
        note="Each path forced (exact_search_max_rows), the same queries; recall against the "
        "exact path's answer. The library takes the exact path when the planner's estimate "
        f"is at most {_threshold(level)} rows here (its default rule: 14 x the square root "
        "of the table's rows, at least 1,000; runs before it: 10,000).",
    )
    for point in level["paths"]:
        window = f"{point['days_back']} days" if point["days_back"] else "all time"
        t.add(
            f"{point['repo']}, {window}",
            f"{point['rows']:,}",
            f"{point['estimate']:,.0f}",
            ms(point["exact_p50_ms"]),
            ms(point["hnsw_p50_ms"]),
            f"{point['hnsw_recall']:.3f}",
            point["library_path"],
        )
    return t


def _threshold(level: dict[str, Any]) -> str:
    values = {p.get("exact_max_rows", 10_000) for p in level["paths"]}
    return " / ".join(f"{v:,.0f}" for v in sorted(values))


def _churn_run(churn: dict[str, Any]) -> str:
    run = churn.get("run")
    if not run:
        return ""
    return (
        f" This cycle comes from another run on the same data ({run['generated_at']}, library "
        f"{run['library'].get('commit', '?')}); the recall before it is that run's."
    )


def restart_table(level: dict[str, Any]) -> Table:
    t = Table(
        ["after a restart", "first 30 searches p50 / p95 / max ms", "prewarm"],
        title=f"First searches after a server restart at {level['rows']:,} rows",
        note="10 each of the three cases, right after the restart. The OS page cache stays "
        "warm across the restart (dropping it needs privileges this machine does not give), "
        "so this measures shared buffers only: a cold disk would be slower.",
    )
    for run in level.get("restart", []):
        latency = run["latency"]
        prewarm = (
            f"{run['prewarm_seconds']:.1f} s, blocks {run['blocks']}" if run["prewarm"] else "-"
        )
        t.add(
            "with pg_prewarm" if run["prewarm"] else "without",
            f"{ms(latency['p50'])} / {ms(latency['p95'])} / {ms(latency['max'])}",
            prewarm,
        )
    return t


SECTIONS = (
    (search_table, ("recall", "api", "baselines")),
    (baseline_table, ("agreement", "baselines")),
    (index_table, ("builds", "sizes", "recall", "api")),
    (sweep_table, ("sweep",)),
    (paths_table, ("paths",)),
    (storage_table, ("sizes_library",)),
    (ingest_table, ("bulk_load", "ingest")),
    (tier_table, ("tier",)),
    (churn_table, ("churn", "recall")),
    (restart_table, ("restart",)),
)
"""Each table and what it needs: a level interrupted midway shows what it measured."""


def level_tables(level: dict[str, Any]) -> list[Table]:
    return [render(level) for render, needs in SECTIONS if all(level.get(k) for k in needs)]


def level_text(level: dict[str, Any]) -> str:
    return "\n\n".join(t.text() for t in level_tables(level)) + "\n"


def headline(results: dict[str, Any]) -> Table:
    t = Table(
        [
            "rows",
            *(f"{c} p50 ms (recall)" for c in CASES),
            "x PG exact (unf.)",
            "x projection",
            "bytes/row",
            "ingest rows/s",
            "bulk load s",
            "load average",
            "reference p50 ms",
        ],
        title="Headline: find_similar_executions through the API, library defaults",
        note=f"Reference: {REFERENCE_SQL}, timed in the same rounds as the searches; it "
        "shows how fast the machine was while they ran.",
    )
    for level in results["levels"]:
        if not all(level.get(k) for k in ("api", "recall", "sizes_library", "ingest")):
            continue
        precision = level["library_index"]
        cells = []
        for case in CASES:
            latency = _lat(level, "api", f"{precision} / {case}")
            value = level["recall"][precision][case]["recall_at_10"]
            cells.append(f"{ms(latency['p50'])} ({_recall(value)})" if latency else "-")
        ours = _lat(level, "api", f"{precision} / unfiltered")
        projected = _projection(PROJECTED_SIMILAR, level["rows"])
        t.add(
            f"{level['rows']:,}",
            *cells,
            _ratio(_lat(level, "baselines", "PostgreSQL exact / unfiltered"), ours),
            ratio(projected / ours["p50"]) if projected and ours else "-",
            f"{level['sizes_library']['total_bytes_per_row']:,.0f}",
            f"{level['ingest']['batch']['rows_per_second']:,.0f}",
            f"{level['bulk_load']['total_seconds']:.0f}",
            f"{level['api']['loadavg'][0]:.1f}",
            ms(x["p50"]) if (x := _lat(level, "api", REFERENCE)) else "-",
        )
    return t


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results.get("server", {})
    lines = [
        "# Search, ingest and storage benchmark",
        "",
        f"Generated {results['generated_at']} by `python bench/search.py` "
        f"(parameters: `{results['parameters']}`).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; {m['python']}; "
        f"{s.get('version', '?')}; pgvector {s.get('pgvector', '?')}; server settings "
        f"{s.get('settings', {})}. Library {results['library']}.",
        "",
        headline(results).markdown(2),
    ]
    for level in results["levels"]:
        lines += ["", f"## {level['rows']:,} rows", ""]
        if "run" in level:
            run = level["run"]
            lines.append(
                f"Measured in a run of its own, {run['generated_at']}, library "
                f"{run['library'].get('commit', '?')}, parameters `{run['parameters']}`."
            )
        if "api" in level:
            lines.append(
                "Load average around the API timing: "
                f"{level['api']['loadavg'][0]:.2f} -> {level['api']['loadavg'][1]:.2f}; "
                f"level took {level.get('level_seconds', 0):.0f} s."
            )
        lines += ["", *(t.markdown(3) + "\n" for t in level_tables(level))]
    return "\n".join(lines) + "\n"
