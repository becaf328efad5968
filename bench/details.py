"""The detail tables of ``RESULTS.md``, one section per part (and per level), from the
run's results alone. Each table says which rounds its reference comes from."""

from __future__ import annotations

import statistics
from typing import Any

from .tables import Table, count, ms, p50_p95, ratio, recall

CALLS = {
    "tier": "get_tier_performance(days_back=30)",
    "pool": "get_pool_performance(days_back=7)",
    "patterns": "get_solution_patterns(min_usage=5, limit=10)",
}


def _ref(group: dict[str, Any] | None) -> str:
    return ms((group or {}).get("reference", {}).get("p50")) if group else "-"


def crossing(paths: list[dict[str, Any]]) -> str:
    """Between which filters the HNSW path became the faster one, and the library's rule."""
    faster = [p for p in paths if p["cases"]["hnsw"]["p50"] < p["cases"]["exact"]["p50"]]
    rule = f"rule: {count(paths[0]['exact_max_rows'])}" if paths else "no filter"
    if not faster:
        return f"exact faster at every filter measured ({rule})"
    first = paths.index(faster[0])
    below = count(paths[first - 1]["rows"]) if first else "-"
    return f"{below} - {count(faster[0]['rows'])} ({rule})"


def median_reference(groups: list[dict[str, Any]]) -> float | None:
    values = [g["reference"]["p50"] for g in groups if g.get("reference")]
    return statistics.median(values) if values else None


def churn_text(churn: dict[str, Any]) -> str:
    alone, library = churn.get("vacuum_alone"), churn["library"]
    first = f"{ms(alone['vacuum_seconds'])} | " if alone else "- | "
    rebuild = ms(library["rebuild_seconds"]) if library["rebuilt_index"] else "no rebuild"
    return (
        f"{first}{rebuild} + {ms(library['vacuum_seconds'])} "
        f"({library['share']:.2%} of {count(library['table_rows'])})"
    )


def _api(level: dict[str, Any]) -> Table:
    api, exact = level["api"], level["exact"]
    out = Table(
        [
            "case",
            "API p50 / p95 ms",
            "recall@10",
            "fewer rows",
            "PostgreSQL exact p50 / p95 ms",
            "exact / API",
        ],
        title=f"Search at {count(level['rows'])} rows ({level['embeddings']})",
        note=f"{level['queries']} queries, {api['cases']['unfiltered']['calls']} calls a case, the "
        f"query's embedding excluded. Machine reference: {_ref(api)} ms in the API's "
        f"rounds, {_ref(exact)} ms in the exact search's.",
    )
    for case, figures in api["cases"].items():
        quality = api["recall"][case]
        out.add(
            case,
            p50_p95(figures),
            recall(quality["recall"]),
            quality["queries_with_fewer_rows"],
            p50_p95(exact["cases"][case]),
            ratio(exact["cases"][case]["p50"] / figures["p50"]),
        )
    return out


def _storage(level: dict[str, Any]) -> Table:
    load, storage = level["bulk_load"], level["storage"]
    out = Table(
        ["relation", "bytes per row"],
        title=f"Storage at {count(level['rows'])} rows",
        note=(
            f"All included: {count(storage['total_bytes_per_row'])} bytes per row. Bulk load "
            f"(orb_learning.bulk): COPY {ms(load['copy_seconds'])} s "
            f"({count(load['copy_rows_per_second'])} rows/s), HNSW build "
            f"{ms(load['index_seconds'])} s, ANALYZE {ms(load['analyze_seconds'])} s, total "
            f"{ms(load['total_seconds'])} s; VACUUM after it {ms(load['vacuum_seconds'])} s."
        ),
    )
    for name, per_row in storage["bytes_per_row"].items():
        out.add(name, count(per_row))
    return out


def _paths(level: dict[str, Any]) -> Table:
    out = Table(
        [
            "repo, window",
            "rows passing",
            "planner's estimate",
            "exact p50 ms",
            "HNSW p50 ms",
            "HNSW recall@10",
            "library's path",
            "reference p50 ms",
        ],
        title=f"Exact path against HNSW path at {count(level['rows'])} rows",
        note="Each path forced (exact_search_max_rows), the same queries, in the same "
        "rounds; recall against the exact path's answers. The library's rule takes the "
        f"exact path up to {count(level['paths'][0]['exact_max_rows']) if level['paths'] else '-'} "
        "rows here.",
    )
    for p in level["paths"]:
        window = f"{p['days_back']} days" if p["days_back"] else "all time"
        out.add(
            f"{p['repo']}, {window}",
            count(p["rows"]),
            count(p["estimate"]),
            ms(p["cases"]["exact"]["p50"]),
            ms(p["cases"]["hnsw"]["p50"]),
            recall(p["hnsw_recall"]),
            p["library_path"],
            _ref(p),
        )
    return out


def _sweep(level: dict[str, Any]) -> Table:
    out = Table(
        [
            "ef_search setting",
            "recall unfiltered",
            "recall frequent repo",
            "p50 unfiltered ms",
            "p50 frequent repo ms",
            "reference p50 ms",
        ],
        title=f"ef_search at {count(level['rows'])} rows",
        note="The public ef_search setting (default 100; the library doubles it on the "
        "half-precision index and scales it by the square root of the rows beyond "
        "100,000, at most 1,000).",
    )
    for point in level["sweep"]:
        quality, cases = point["recall"], point["cases"]
        out.add(
            point["ef_search"],
            recall(quality["unfiltered"]["recall"]),
            recall(quality["frequent repo"]["recall"]),
            ms(cases["unfiltered"]["p50"]),
            ms(cases["frequent repo"]["p50"]),
            _ref(point),
        )
    return out


def _sample_check(level: dict[str, Any]) -> Table:
    check = level["sample_check"]
    out = Table(
        ["case", "checked p50 / p95 ms", "unchecked p50 / p95 ms", "checked - unchecked"],
        title=f"The sample check at {count(level['rows'])} rows",
        note="orb_learning._search.find_similar with the default tuning and with "
        f"check_sample_rows=0, in the same rounds; reference {_ref(check)} ms.",
    )
    for case in ("unfiltered", "frequent repo"):
        on, off = check["cases"][f"{case}, checked"], check["cases"][f"{case}, unchecked"]
        out.add(case, p50_p95(on), p50_p95(off), f"{on['p50'] - off['p50']:+.2f} ms")
    return out


def _churn(level: dict[str, Any]) -> Table:
    churn, ingest = level["churn"], level["ingest"]
    single = ingest["single"]["cases"]["store_execution"]
    out = Table(
        [
            "after the deletes",
            "table rows",
            "deleted",
            "delete s",
            "index rebuilt",
            "rebuild s",
            "VACUUM s",
        ],
        title=f"Ingest and churn at {count(level['rows'])} rows",
        note=f"Before: ingest with the HNSW index maintained, store_execution p50 / p95 "
        f"{p50_p95(single)} ms (reference {_ref(ingest['single'])} ms), "
        f"store_executions {count(ingest['rows_per_second'])} rows/s "
        f"({count(ingest['rows'])} rows in calls of 1,000). After: p50 / p95 ms "
        + "; ".join(
            f"{c} {p50_p95(f)} (recall {recall(churn['after']['recall'][c]['recall'])})"
            for c, f in churn["after"]["cases"].items()
        )
        + f", reference {_ref(churn['after'])} ms.",
    )
    for step, label in (("vacuum_alone", "VACUUM alone"), ("library", "reclaim.after_delete")):
        if step in churn:
            s = churn[step]
            out.add(
                label,
                count(s["table_rows"]),
                f"{count(churn['deleted'])} ({s['share']:.2%})",
                ms(s["delete_seconds"]),
                "yes" if s["rebuilt_index"] else "no",
                ms(s["rebuild_seconds"]),
                ms(s["vacuum_seconds"]),
            )
    return out


def _restart(level: dict[str, Any]) -> Table:
    out = Table(
        ["after a restart", "first 30 searches p50 / p95 / max ms", "prewarm s"],
        title=f"Restart at {count(level['rows'])} rows",
        note="10 per case. The OS page cache survives the restart (dropping it needs "
        "privileges this host lacks): only shared buffers start cold.",
    )
    for run in level.get("restart", []):
        first = run["first_30"]
        out.add(
            "with pg_prewarm" if run["prewarm"] else "without",
            f"{ms(first['p50'])} / {ms(first['p95'])} / {ms(first['max'])}",
            ms(run["prewarm_seconds"]),
        )
    return out


def _analytics(level: dict[str, Any]) -> Table:
    cases, r = level["cases"], level["refresh"]
    out = Table(
        [
            "call (all repos)",
            "fresh=False p50 / p95 ms",
            "fresh=True p50 / p95 ms",
            "GROUP BY p50 / p95 ms",
            "GROUP BY / fresh=False",
            "GROUP BY / fresh=True",
        ],
        title=f"Analytics at {count(level['rows'])} rows",
        note=f"Live tail: {count(level['live_tail_rows'])} rows. Machine reference "
        f"{_ref(level)} ms in the same rounds. Refresh, client's wall time: first "
        f"{ms(r['first_seconds'])} s; periodic (recent parts) "
        + ", ".join(ms(s) for s in r["periodic_seconds"])
        + " s; daily seal advance "
        + ", ".join(ms(s) for s in r["seal_advance_seconds"])
        + " s.",
    )
    for method, call in CALLS.items():
        false, true, direct = (
            cases[f"{method}/{m}"] for m in ("fresh=False", "fresh=True", "direct")
        )
        out.add(
            call,
            p50_p95(false),
            p50_p95(true),
            p50_p95(direct),
            ratio(direct["p50"] / false["p50"]),
            ratio(direct["p50"] / true["p50"]),
        )
    return out


def _embeddings(part: dict[str, Any]) -> Table:
    query, rates = part["per_query"], part["throughput"]
    base = part["reference_backend"]
    out = Table(
        [
            "backend",
            "load s",
            "least cosine",
            "mean cosine",
            "below 0.99",
            "query p50 / p95 ms",
            f"vs {base}",
            "sentences/s (embed_many)",
            f"vs {base}",
        ],
        title="Embedding backends",
        note=f"Cosine to {base} on {part['agreement'][base]['sentences']} fixed "
        "sentences (tests/embedding_sentences.txt), batched and alone, the least of "
        f"the two. Query: embed_query of new sentences, reference {_ref(query)} ms in "
        f"the same rounds. Sentences/s: embed_many of {rates['sentences']} new "
        f"sentences, best run; reference {_ref(rates)} ms between runs.",
    )
    for name in part["backends"]:
        a, q = part["agreement"][name], query["cases"][name]
        rate = rates["sentences_per_second"]
        out.add(
            f"{name} (default)" if name == part["default"] else name,
            ms(part["load_seconds"][name]),
            f"{a['min_cosine']:.4f}",
            f"{a['mean_cosine']:.5f}",
            a["below_bar"],
            p50_p95(q),
            ratio(query["cases"][base]["p50"] / q["p50"]),
            count(rate[name]),
            ratio(rate[name] / rate[base]),
        )
    return out


def _telemetry(part: dict[str, Any]) -> list[Table]:
    calls = Table(
        ["condition", "p50 us", "p99 us", "p99 per round", "reference p50 ms"],
        title="Telemetry: the capture call, caller's side",
        note=f"{count(part['tasks'])} tasks, 3 events each, {part['producers']} "
        f"producers; model on {part['backend']}; batch_size {part['batch_size']}. "
        "Medians over the rounds; the reference timed after each round.",
    )
    for condition, c in part["caller_side"].items():
        calls.add(
            condition,
            ms(c["p50"]),
            ms(c["p99"]),
            ", ".join(ms(r["p99"]) for r in c["rounds"]),
            _ref(c),
        )
    t = part["throughput"]
    segments = Table(
        [
            "segment",
            "tasks",
            "model alone s",
            "capture s",
            "writes alone s",
            "writes no model call hid s",
            "reference p50 ms",
        ],
        title="Telemetry throughput",
        note=f"Medians of the segments: capture / model alone "
        f"{t['capture_over_model']:.3f}; writes alone / capture "
        f"{t['db_alone_share']:.1%}; writes no model call hid / capture "
        f"{t['db_exposed_share']:.1%}. All rows written, none rejected: "
        f"{'yes' if t['all_rows_written'] else 'NO'}.",
    )
    for number, s in enumerate(t["segments"], 1):
        segments.add(
            number,
            count(s["tasks"]),
            ms(s["model_seconds"]),
            ms(s["capture_seconds"]),
            ms(s["db_alone_seconds"]),
            ms(s["db_exposed_seconds"]),
            ms(s["reference_p50"]),
        )
    return [calls, segments]


def _routing_latency(level: dict[str, Any]) -> Table:
    first = level.get("first_call_seconds", {})
    table = Table(
        ["case", "p50 ms", "p95 ms", "calls", "reference p50 ms"],
        title=f"recommend_route at {level['rows']:,} rows",
        note="First call per filter (it fits the model, then cached 15 minutes): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in first.items()),
    )
    for case, figures in level["cases"].items():
        table.add(
            case,
            ms(figures["p50"]),
            ms(figures["p95"]),
            figures["calls"],
            ms(level["reference"]["p50"]),
        )
    return table


def sections(results: dict[str, Any]) -> list[str]:
    """Markdown per part: a heading, then its tables."""
    parts, out = results["parts"], []
    tables: list[Table] = []
    for level in parts.get("search", []):
        tables += [_api(level), _storage(level), _paths(level), _sweep(level)]
        tables += [_sample_check(level)] if level.get("sample_check") else []
        tables.append(_churn(level))
        tables += [_restart(level)] if level.get("restart") else []
    out.append(("## Search, ingest and storage", tables))
    out.append(("## Analytics", [_analytics(level) for level in parts.get("analytics", [])]))
    if "routing" in parts:
        from .routing import tables as routing_tables

        latency = [_routing_latency(level) for level in parts["routing"].get("latency", [])]
        out.append(("## Route recommendations", latency + routing_tables(parts["routing"])))
    if parts.get("partitions"):
        from .partitions_report import table as partitions_table

        tables = [partitions_table(level) for level in parts["partitions"]]
        out.append(("## Time partitions against one table", tables))
    if "embeddings" in parts:
        out.append(("## Embeddings", [_embeddings(parts["embeddings"])]))
    if "telemetry" in parts:
        out.append(("## Telemetry", _telemetry(parts["telemetry"])))
    return [
        "\n\n".join([heading, *(t.markdown() for t in tables)]) for heading, tables in out if tables
    ]
