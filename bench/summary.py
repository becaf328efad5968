"""The summary table of a run, and ``RESULTS.md``: rendered from ``results.json`` alone.

    python -m bench.summary [RESULTS_JSON] [--compare PREVIOUS_JSON] [--write]

prints the summary table of a saved run (default ``bench/results.json``; ``--write``
renders its ``RESULTS.md`` again); with
``--compare``, each figure beside the same figure of the previous run, their ratio and
the previous run's machine reference (two runs on a shared host: read a ratio against
the two references, and trust only large ones).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import details, partitions_report
from .results import BENCH_DIR, read
from .tables import Table, count, ms, ratio, recall
from .timing import REFERENCE_SQL


@dataclass(frozen=True)
class Row:
    """One figure of the summary: ``key`` is the number a comparison divides."""

    part: str
    figure: str
    rows: int | None
    text: str
    key: float | None
    reference: float | None


def _ref(group: dict[str, Any] | None) -> float | None:
    return (group or {}).get("reference", {}).get("p50") if group else None


def _search(level: dict[str, Any]) -> Iterator[Row]:
    n, api, exact = level["rows"], level["api"], level["exact"]
    for case, figures in api["cases"].items():
        r = api["recall"][case]["recall"]
        yield Row(
            "search",
            f"find_similar_executions p50 / p95 ms (recall@10), {case}",
            n,
            f"{ms(figures['p50'])} / {ms(figures['p95'])} ({recall(r)})",
            figures["p50"],
            _ref(api),
        )
    pg = exact["cases"]["unfiltered"]["p50"]
    yield Row(
        "search",
        "PostgreSQL exact search p50 ms, unfiltered (the API's speed-up)",
        n,
        f"{ms(pg)} ({ratio(pg / api['cases']['unfiltered']['p50'])})",
        pg,
        _ref(exact),
    )
    crossing = details.crossing(level["paths"])
    yield Row(
        "search",
        "exact path slower than HNSW from rows passing (library's rule)",
        n,
        crossing,
        None,
        details.median_reference(level["paths"]),
    )
    check = level.get("sample_check")
    if check:
        pairs = [
            (check["cases"][f"{c}, checked"]["p50"], check["cases"][f"{c}, unchecked"]["p50"])
            for c in ("unfiltered", "frequent repo")
        ]
        yield Row(
            "search",
            "HNSW answer checked against the row sample: p50 ms checked / "
            "unchecked, unfiltered; frequent repo",
            n,
            "; ".join(f"{ms(a)} / {ms(b)}" for a, b in pairs),
            pairs[0][0] - pairs[0][1],
            _ref(check),
        )
    load = level["bulk_load"]
    yield Row(
        "search",
        "bulk load s (COPY rows/s, HNSW build s)",
        n,
        f"{ms(load['total_seconds'])} ({count(load['copy_rows_per_second'])}, "
        f"{ms(load['index_seconds'])})",
        load["total_seconds"],
        _ref(load),
    )
    ingest = level["ingest"]
    single = ingest["single"]["cases"]["store_execution"]
    yield Row(
        "search",
        "ingest rows/s, HNSW maintained (store_execution p50 ms)",
        n,
        f"{count(ingest['rows_per_second'])} ({ms(single['p50'])})",
        ingest["rows_per_second"],
        _ref(ingest["single"]),
    )
    yield Row(
        "search",
        "storage bytes per row, indexes and TOAST included",
        n,
        count(level["storage"]["total_bytes_per_row"]),
        level["storage"]["total_bytes_per_row"],
        None,
    )
    churn = level["churn"]
    yield Row(
        "search",
        "churn: VACUUM alone s | rebuild s + VACUUM s (share deleted)",
        n,
        details.churn_text(churn),
        churn["library"]["rebuild_seconds"] + churn["library"]["vacuum_seconds"],
        _ref(churn["library"]),
    )
    after = churn["after"]
    yield Row(
        "search",
        "after the churn p50 ms, 3 cases (recall@10)",
        n,
        " / ".join(ms(c["p50"]) for c in after["cases"].values())
        + " ("
        + ", ".join(recall(c["recall"]) for c in after["recall"].values())
        + ")",
        after["cases"]["unfiltered"]["p50"],
        _ref(after),
    )


def _analytics(level: dict[str, Any]) -> Iterator[Row]:
    n, cases = level["rows"], level["cases"]
    for method, call in details.CALLS.items():
        figures = [
            cases[f"{method}/{mode}"]["p50"] for mode in ("fresh=False", "fresh=True", "direct")
        ]
        yield Row(
            "analytics",
            f"{call} p50 ms: fresh=False / fresh=True / GROUP BY",
            n,
            " / ".join(ms(f) for f in figures),
            figures[1],
            _ref(level),
        )
    r = level["refresh"]
    yield Row(
        "analytics",
        "refresh s: periodic / first / daily seal advance",
        n,
        f"{ms(r['periodic_median_seconds'])} / {ms(r['first_seconds'])} / "
        f"{ms(r['seal_advance_median_seconds'])}",
        r["periodic_median_seconds"],
        _ref(r),
    )


def _embeddings(part: dict[str, Any]) -> Iterator[Row]:
    query, rate = part["per_query"], part["throughput"]["sentences_per_second"]
    for name in part["backends"]:
        label = f"{name} (default)" if name == part["default"] else name
        p50 = query["cases"][name]["p50"]
        yield Row(
            "embeddings",
            f"{label}: query p50 ms / sentences/s / least cosine",
            None,
            f"{ms(p50)} / {count(rate[name])} / {part['agreement'][name]['min_cosine']:.4f}",
            p50,
            _ref(query),
        )


def _telemetry(part: dict[str, Any]) -> Iterator[Row]:
    for condition, c in part["caller_side"].items():
        yield Row(
            "telemetry",
            f"capture call p50 / p99 us, {condition}",
            None,
            f"{ms(c['p50'])} / {ms(c['p99'])}",
            c["p99"],
            _ref(c),
        )
    t = part["throughput"]
    yield Row(
        "telemetry",
        "capture / model alone (rows/s; model texts/s)",
        None,
        f"{t['capture_over_model']:.2f} ({count(t['capture_rows_per_second'])}; "
        f"{count(t['model_texts_per_second'])})",
        t["capture_over_model"],
        None,
    )
    yield Row(
        "telemetry",
        "database's share: writes no model call hid / writes alone",
        None,
        f"{t['db_exposed_share']:.1%} / {t['db_alone_share']:.1%}",
        t["db_exposed_share"],
        None,
    )
    delay = t["row_delay_seconds"]
    yield Row(
        "telemetry",
        "row written after its task's last event, s p50 / p99 / max",
        None,
        f"{ms(delay['p50'])} / {ms(delay['p99'])} / {ms(delay['max'])}",
        delay["p99"],
        None,
    )


def _routing_latency(level: dict[str, Any]) -> Iterator[Row]:
    cases, n = level["cases"], level["rows"]
    search = cases["find_similar_executions"]["p50"]
    for case in ("2 candidates", "default candidates, logged", "frequent repo"):
        p50 = cases[case]["p50"]
        yield Row(
            "routing",
            f"recommend_route p50 / p95 ms, {case} (x find_similar_executions p50)",
            n,
            f"{ms(p50)} / {ms(cases[case]['p95'])} ({ratio(p50 / search)})",
            p50,
            _ref(level),
        )


def _routing_quality(quality: dict[str, Any]) -> Iterator[Row]:
    for data, result in quality["files"].items():
        scores = {s["method"]: s for s in result["offline"]}
        yield Row(
            "routing",
            f"{data}: APGR recommender / per-type / kNN / oracle (ECE)",
            result["tasks"],
            " / ".join(
                f"{scores[m]['apgr']:.3f}"
                for m in ("recommender", "per_task_type", "knn", "oracle")
            )
            + f" ({scores['recommender']['ece']:.3f})",
            scores["recommender"]["apgr"],
            None,
        )
        played = {(r["policy"], r["cost_weight"]): r for r in result["replay"]}
        for weight in sorted({w for _, w in played}):
            figures = [
                played.get((p, weight)) for p in ("thompson", "greedy", "per_type_greedy", "random")
            ]
            if None in figures:
                continue
            yield Row(
                "routing",
                f"{data}: replay reward (cost weight {weight:g}): "
                "Thompson / greedy / per-type / random",
                result["tasks"],
                " / ".join(f"{f['reward']:.3f}" for f in figures if f is not None),
                figures[0]["reward"] if figures[0] else None,
                None,
            )


def _partitions(level: dict[str, Any]) -> Iterator[Row]:
    for figure, text, key, reference in partitions_report.lines(level):
        yield Row("partitions", figure, level["rows"], text, key, reference)


def rows(results: dict[str, Any]) -> list[Row]:
    parts = results["parts"]
    out: list[Row] = []
    for level in parts.get("search", []):
        out += _search(level)
    for level in parts.get("analytics", []):
        out += _analytics(level)
    for level in parts.get("routing", {}).get("latency", []):
        out += _routing_latency(level)
    if "quality" in parts.get("routing", {}):
        out += _routing_quality(parts["routing"]["quality"])
    for level in parts.get("partitions", []):
        out += _partitions(level)
    if "embeddings" in parts:
        out += _embeddings(parts["embeddings"])
    if "telemetry" in parts:
        out += _telemetry(parts["telemetry"])
    return out


def table(results: dict[str, Any], previous: dict[str, Any] | None = None) -> Table:
    """The summary; with ``previous``, its figures, the ratio and its reference beside."""
    headers = ["part", "figure", "rows", "measured", "reference p50 ms"]
    before = {(r.part, r.figure, r.rows): r for r in rows(previous)} if previous else {}
    if previous:
        headers += ["previous", "now / previous", "previous reference"]
    out = Table(headers)
    for r in rows(results):
        cells = [r.part, r.figure, count(r.rows) if r.rows else "", r.text, ms(r.reference)]
        if previous:
            old = before.get((r.part, r.figure, r.rows))
            change = r.key / old.key if old and old.key and r.key is not None else None
            cells += [old.text if old else "-", ratio(change), ms(old.reference if old else None)]
        out.add(*cells)
    return out


def _loads(parts: dict[str, Any]) -> str:
    """Each part's (each level's) load average range: how busy the host was meanwhile."""
    out = []
    for name, part in parts.items():
        if name == "routing":
            part = [*part.get("latency", []), *([part["quality"]] if "quality" in part else [])]
        for one in part if isinstance(part, list) else [part]:
            load, rows = one["load_average"], f" {count(one['rows'])}" if "rows" in one else ""
            out.append(f"{name}{rows} {load['min']}-{load['max']}")
    return ", ".join(out)


def header(results: dict[str, Any]) -> list[str]:
    m, lib, srv = results["machine"], results["library"], results.get("server", {})
    load = results.get("load", {}).get("run", {})
    changes = ", with uncommitted changes" if lib["uncommitted_changes"] else ""
    settings = ", ".join(f"{k} {v}" for k, v in srv.get("settings", {}).items())
    minutes = results.get("seconds", 0) / 60
    memory = int(m["memory"].split()[0]) / 2**20 if m["memory"].endswith("kB") else m["memory"]
    return [
        "# Benchmark results",
        "",
        f"`{results['command']}`, {results['generated_at']}, {minutes:.0f} minutes; "
        f"orb-learning {lib['version']} at commit {lib['commit']}{changes}. {m['cpu']}, "
        f"{m['cores']} cores, {memory:.0f} GiB, Linux {m['kernel']}, {m['python']}; PostgreSQL "
        f"{srv.get('postgresql')} with pgvector {srv.get('pgvector')} ({settings}). "
        f"1-minute load average over the run: {load.get('min')}-{load.get('max')} "
        f"(median {load.get('median')}); per part: {_loads(results['parts'])}.",
        *_merges(results),
        "",
        "Medians (p50) and ratios of figures measured in the same rounds. The machine "
        f"reference (`{REFERENCE_SQL}`) is timed in the same rounds as the figures beside "
        "it: this shared host's speed drifts by up to 2x over minutes, so a figure is read "
        "against its own reference, and two runs are compared with `python -m bench.summary "
        "--compare OLD.json`, not by their absolute figures alone.",
        "",
    ]


def _merges(results: dict[str, Any]) -> list[str]:
    """A line per later run merged in (``--merge``): its parts came from it, not the run."""
    lines = []
    for merge in results.get("merged", []):
        lib, load = merge["library"], merge.get("load", {}).get("run", {})
        changes = ", with uncommitted changes" if lib["uncommitted_changes"] else ""
        lines += [
            "",
            f"Merged in later: {', '.join(merge['parts'])} from `{merge['command']}`, "
            f"{merge['generated_at']}, {merge.get('seconds', 0) / 60:.0f} minutes, at commit "
            f"{lib['commit']}{changes} (load average {load.get('min')}-{load.get('max')}).",
        ]
    return lines


def markdown(results: dict[str, Any]) -> str:
    out = [*header(results), "## Summary", "", table(results).markdown(), ""]
    for section in details.sections(results):
        out += [section, ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The summary table of a saved run.")
    parser.add_argument("results", nargs="?", type=Path, default=BENCH_DIR / "results.json")
    parser.add_argument("--compare", type=Path, metavar="PREVIOUS_JSON")
    parser.add_argument("--write", action="store_true", help="rewrite RESULTS.md beside it")
    args = parser.parse_args(argv)
    results = read(args.results)
    if args.write:
        (args.results.parent / "RESULTS.md").write_text(markdown(results))
    print(table(results, read(args.compare) if args.compare else None).text())


if __name__ == "__main__":
    main()
