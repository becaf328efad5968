"""Before and after: the key figures of an earlier run (``--before``, an earlier
``telemetry.json``) beside this run's, for ``TELEMETRY.md``.

Runs of this benchmark made with an older library still read: the database time on the
critical path was then ``store_executions`` minus the model (the writer embedded inside
it, so none of it overlapped), which is what the spans measure now.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.telemetry_report import ALL
from bench.telemetry_stream import CAPTURE_KINDS

DEFAULT_BEFORE = Path(__file__).resolve().parent / "history" / "97cc938" / "telemetry.json"
IDLE_W = "writer idle, default GC"
DEFAULT = "real model busy, default GC"
E2E = "throughput run, real model, default GC"


def _exposed(throughput: dict[str, Any]) -> float:
    """Median over segments of the database's time not hidden behind the model."""
    ratios = throughput["ratios"]
    if "db_exposed_share_median" in ratios:
        return float(ratios["db_exposed_share_median"])
    segments = throughput["end_to_end_real"]["segments"]
    return statistics.median(
        (g["store_seconds"] - g["encode_seconds"]) / g["seconds"] for g in segments
    )


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The figures compared, from a run's results."""
    conditions = results["caller_side"]["conditions"]
    t = results["throughput"]
    calls = {
        name: {
            label: {q: conditions[name]["by_label"][label][q] for q in ("p50", "p99")}
            for label in (ALL, *CAPTURE_KINDS)
        }
        for name in (IDLE_W, DEFAULT, E2E)
    }
    return {
        "finished_at": results["finished_at"],
        "commit": results["machine"]["commit"],
        "backend": results.get("model", {}).get("backend", "torch"),
        "load_average": results["load_average"],
        "tasks": results["parameters"]["tasks"],
        "calls": calls,
        "capture_over_model": t["ratios"]["capture_over_model_median"],
        "db_alone_share": t["ratios"]["db_share_median"],
        "db_exposed_share": _exposed(t),
        "records_per_second": {
            key: t[key]["records_per_second"]
            for key in ("model_alone", "end_to_end_real", "db_alone", "end_to_end_hash")
        },
    }


def _change(before: float, after: float) -> str:
    return f"{after / before:.2f}x" if before else "-"


def _rows(b: dict[str, Any], a: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    """(figure, before, after, format) for the figures compared."""
    rows = []
    for name in (DEFAULT, IDLE_W, E2E):
        for q in ("p50", "p99"):
            label = f"all capture calls, {q} us ({name})"
            rows.append((label, b["calls"][name][ALL][q], a["calls"][name][ALL][q], ".1f"))
    for kind in CAPTURE_KINDS:
        label = f"{kind}, p50 us ({DEFAULT})"
        rows.append(
            (label, b["calls"][DEFAULT][kind]["p50"], a["calls"][DEFAULT][kind]["p50"], ".1f")
        )
    rows.append(
        (
            "capture / model alone, records/s (median of segments)",
            b["capture_over_model"],
            a["capture_over_model"],
            ".3f",
        )
    )
    for key, label in (
        ("db_exposed_share", "database time not overlapped by the model / end to end"),
        ("db_alone_share", "database writes alone / end to end (the work, overlapped or not)"),
    ):
        rows.append((label, b[key], a[key], ".1%"))
    for key, label in (
        ("end_to_end_real", "capture end to end, real model, records/s"),
        ("model_alone", "model alone, texts/s"),
        ("db_alone", "database writes alone, records/s"),
        ("end_to_end_hash", "capture end to end, hash embedder, records/s"),
    ):
        rows.append((label, b["records_per_second"][key], a["records_per_second"][key], ",.1f"))
    return rows


def render(results: dict[str, Any]) -> list[str]:
    """The Markdown section (empty without an earlier run)."""
    if "before" not in results:
        return []
    b, a, same = results["before"], summary(results), results.get("same_model")
    backend = results["model"].get("backend", "torch")
    load = ", ".join(f"{v:.2f}" for v in b["load_average"]["start"])
    out = [
        "## Before and after",
        "",
        f"Before: the library and benchmark at {b['commit']} ({b['finished_at']}, "
        f"{b['tasks']:,} tasks, load average at start {load}; `{Path(b['file']).name}` from "
        f"`{Path(b['file']).parent.name}`; `python bench/telemetry.py` there), with the "
        f"{b.get('backend', 'torch')} backend; after: this run, with the {backend} backend.",
    ]
    header = ["figure", "before", f"after ({backend})", "after / before"]
    if same is not None:
        out[-1] += (
            f" The middle column is a run of this library with the torch backend "
            f"({same['finished_at']}, commit {same['commit']}; "
            "`ORB_LEARNING_EMBEDDING_BACKEND=torch python bench/telemetry.py`, given to this run"
            " as `--same-model`), so that the model is the same as before and only the capture "
            "changed."
        )
        header[2:2] = ["after (torch)", "after (torch) / before"]
    out[-1] += (
        " Runs one after the other on the same machine: compare the ratios first, the "
        "absolute figures with care."
    )
    out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    others = [(r[2], r[1]) for r in _rows(b, same)] if same is not None else []
    for n, (label, x, y, spec) in enumerate(_rows(b, a)):
        cells = [label, format(x, spec)]
        if same is not None:
            z = others[n][0]
            cells += [format(z, spec), _change(x, z)]
        cells += [format(y, spec), _change(x, y)]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def series(before: list[Path], after: list[Path]) -> dict[str, Any]:
    """Runs made in turn (before, after, before, after...): each run's caller-side
    figures, their medians and the ratio of the medians."""
    runs = {
        "before": [summary(json.loads(path.read_text())) | {"file": str(path)} for path in before],
        "after": [summary(json.loads(path.read_text())) | {"file": str(path)} for path in after],
    }
    figures = []
    for name in (IDLE_W, DEFAULT, E2E):
        for label in (ALL, *CAPTURE_KINDS):
            for q in ("p50", "p99") if label == ALL else ("p50",):
                values = {k: [r["calls"][name][label][q] for r in v] for k, v in runs.items()}
                b, a = (statistics.median(values[k]) for k in ("before", "after"))
                figures.append(
                    {"condition": name, "call": label, "quantile": q, "before": b, "after": a}
                    | {"ratio": a / b if b else None, "runs": values}
                )
    return {"runs": runs, "figures": figures}


def render_series(results: dict[str, Any]) -> list[str]:
    """The Markdown section of ``series`` (empty without it)."""
    data = results.get("series")
    if not data:
        return []
    runs = data["runs"]
    described = []
    for kind in ("before", "after"):
        for r in runs[kind]:
            load = ", ".join(f"{v:.2f}" for v in r["load_average"]["start"])
            described.append(f"{kind} {r['commit']} at {r['finished_at']} (load {load})")
    out = [
        "## Before and after, interleaved runs",
        "",
        f"{len(runs['before'])} runs of the library before this change and "
        f"{len(runs['after'])} after it, in turn, on the same machine in one session "
        f"(`--tasks {runs['after'][0]['tasks']}`; the before runs with the benchmark of their "
        "own commit): " + "; ".join(described) + ". The medians of the runs' figures (each "
        "itself the median of its rounds), and their ratio; every run's figure beside.",
        "",
        "| condition | call | q | before | after | after / before | before runs | after runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in data["figures"]:
        cells = [
            f["condition"],
            f["call"],
            f["quantile"],
            f"{f['before']:.1f}",
            f"{f['after']:.1f}",
            "-" if f["ratio"] is None else f"{f['ratio']:.2f}x",
            ", ".join(f"{v:.1f}" for v in f["runs"]["before"]),
            ", ".join(f"{v:.1f}" for v in f["runs"]["after"]),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]
