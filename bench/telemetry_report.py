"""The telemetry benchmark's figures: percentiles of the timed calls, the GC pauses that
fell in them, the stdout tables and the Markdown report."""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from bench.telemetry_probes import ENCODING, IDLE, STORING, GcMonitor, Samples
from bench.telemetry_stream import BASELINE_KINDS, CAPTURE_KINDS

ALL = "all capture calls"
TARGET_P99_US = 50.0
TARGET_DB_SHARE = 0.10
TARGET_MODEL_RATIO = 0.90  # "bounded by embedding speed": within the same 10% budget
SLOW_US = (TARGET_P99_US, 1000.0)  # calls over these are attributed to GC and the model


def percentiles(values_ns: Sequence[int]) -> dict[str, float]:
    """n, mean, p50, p90, p99, p99.9 and max in microseconds (nearest rank)."""
    ordered = sorted(values_ns)
    n = len(ordered)
    if not n:
        return {"n": 0}

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, int(q * n + 0.999999) - 1))] / 1000

    return {
        "n": n,
        "mean": sum(ordered) / n / 1000,
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "p99.9": rank(0.999),
        "max": ordered[-1] / 1000,
    }


def _overlaps(spans: list[tuple[int, ...]], starts: list[int], t0: int, t1: int) -> bool:
    """Whether any of the sorted, disjoint ``spans`` (start, end, ...) meets [t0, t1]."""
    i = bisect_left(starts, t1)
    return i > 0 and spans[i - 1][1] > t0


def overlap_seconds(spans: Sequence[tuple[int, int]], others: Sequence[tuple[int, int]]) -> float:
    """The time (s) where one of ``spans`` and one of ``others`` (each a set of disjoint
    (start ns, end ns) spans) run at once."""
    a, b = sorted(spans), sorted(others)
    i = j = total = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, end - start)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total / 1e9


def analyse(
    samples: Samples, monitor: GcMonitor, encodes: list[tuple[int, int]], window: tuple[int, int]
) -> dict[str, Any]:
    """Per label and for all capture calls: percentiles; for capture calls: the writer's
    state when they started, and how many of the slow ones overlapped a GC pause or a model
    call (``encodes``, in the executor thread); the GC pauses inside the producers' window."""
    kinds = {
        kind: percentiles(samples.durations[kind]) for kind in (*CAPTURE_KINDS, *BASELINE_KINDS)
    }
    kinds[ALL] = percentiles(samples.capture_durations())
    states = [s for kind in CAPTURE_KINDS for s in samples.states[kind]]
    calls = len(states) or 1
    pauses = sorted(p for p in monitor.pauses if window[0] <= p[0] <= window[1])
    pause_starts = [p[0] for p in pauses]
    encodes = sorted(encodes)
    encode_starts = [e[0] for e in encodes]
    slow = {
        f"over {limit:g} us": {
            "count": 0,
            "overlapping_gc_pause": 0,
            "overlapping_encode": 0,
            "overlapping_neither": 0,
        }
        for limit in SLOW_US
    }
    for kind in CAPTURE_KINDS:
        for t0, d in zip(samples.starts[kind], samples.durations[kind], strict=True):
            if d <= SLOW_US[0] * 1000:
                continue
            in_gc = _overlaps(pauses, pause_starts, t0, t0 + d)
            in_encode = _overlaps(encodes, encode_starts, t0, t0 + d)
            for limit, counts in zip(SLOW_US, slow.values(), strict=True):
                if d > limit * 1000:
                    counts["count"] += 1
                    counts["overlapping_gc_pause"] += in_gc
                    counts["overlapping_encode"] += in_encode
                    counts["overlapping_neither"] += not (in_gc or in_encode)
    gens = {g: [p[1] - p[0] for p in pauses if p[2] == g] for g in (0, 1, 2)}
    return {
        "calls": kinds,
        "writer_state_share": {
            "encoding": states.count(ENCODING) / calls,
            "storing (not encoding)": states.count(STORING) / calls,
            "idle": states.count(IDLE) / calls,
        },
        "slow_calls": slow,
        "gc": {
            f"gen{g}": {
                "collections": len(v),
                "total_ms": sum(v) / 1e6,
                "max_ms": max(v, default=0) / 1e6,
            }
            for g, v in gens.items()
        },
        "window_seconds": (window[1] - window[0]) / 1e9,
    }


def median_of(rounds: Sequence[dict[str, Any]], label: str, key: str) -> float:
    return statistics.median(r["calls"][label][key] for r in rounds)


def condition_row(rounds: Sequence[dict[str, Any]], label: str) -> dict[str, float]:
    """Over rounds: median of p50/p99/p99.9, worst max, and the p99 of each round."""
    return {
        "p50": median_of(rounds, label, "p50"),
        "p99": median_of(rounds, label, "p99"),
        "p99.9": median_of(rounds, label, "p99.9"),
        "max": max(r["calls"][label]["max"] for r in rounds),
        "p99_per_round": [r["calls"][label]["p99"] for r in rounds],
        "n_per_round": rounds[0]["calls"][label]["n"],
    }


def condition(rounds: Sequence[dict[str, Any]], description: str) -> dict[str, Any]:
    """A condition measured in one or more rounds: per label ``condition_row``; writer
    states averaged, slow calls and GC collections summed, GC pauses at their worst."""
    labels = (ALL, *CAPTURE_KINDS, *BASELINE_KINDS)
    shares = rounds[0]["writer_state_share"].keys()
    return {
        "description": description,
        "rounds": len(rounds),
        "by_label": {label: condition_row(rounds, label) for label in labels},
        "writer_state_share": {
            k: statistics.fmean(r["writer_state_share"][k] for r in rounds) for k in shares
        },
        "slow_calls": {
            limit: {k: sum(r["slow_calls"][limit][k] for r in rounds) for k in counts}
            for limit, counts in rounds[0]["slow_calls"].items()
        },
        "gc": {
            g: {
                "collections": sum(r["gc"][g]["collections"] for r in rounds),
                "total_ms": sum(r["gc"][g]["total_ms"] for r in rounds),
                "max_ms": max(r["gc"][g]["max_ms"] for r in rounds),
            }
            for g in ("gen0", "gen1", "gen2")
        },
        "window_seconds": statistics.median(r["window_seconds"] for r in rounds),
        "per_round": list(rounds),
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str(c) for c in header], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def latency_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per condition and label (the four conditions of the caller-side table)."""
    rows = []
    for name, condition in results["caller_side"]["conditions"].items():
        for label in (ALL, *CAPTURE_KINDS, *BASELINE_KINDS):
            c = condition["by_label"][label]
            rows.append(
                [name if label == ALL else "", label, c["p50"], c["p99"], c["p99.9"], c["max"]]
            )
    return rows


def state_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, c in results["caller_side"]["conditions"].items():
        share, (low, high) = c["writer_state_share"], c["slow_calls"].values()
        rows.append(
            [
                name,
                f"{share['encoding']:.0%}",
                f"{share['storing (not encoding)']:.0%}",
                f"{share['idle']:.0%}",
                low["count"],
                low["overlapping_gc_pause"],
                low["overlapping_encode"],
                high["count"],
                high["overlapping_gc_pause"],
                high["overlapping_encode"],
                high["overlapping_neither"],
                "/".join(str(c["gc"][g]["collections"]) for g in ("gen0", "gen1", "gen2")),
                "/".join(f"{c['gc'][g]['max_ms']:.1f}" for g in ("gen0", "gen1", "gen2")),
            ]
        )
    return rows


def throughput_rows(results: dict[str, Any]) -> list[list[Any]]:
    t = results["throughput"]
    rows = []
    for key, label in (
        ("model_alone", "model alone (embed_many, batches of batch_size)"),
        ("end_to_end_real", "capture end to end, real model"),
        ("db_alone", "database writes alone (precomputed vectors)"),
        ("end_to_end_hash", "capture end to end, hash embedder"),
    ):
        r = t[key]
        rows.append([label, r["records"], r["seconds"], r["records_per_second"], r["note"]])
    return rows


def render_text(results: dict[str, Any]) -> str:
    t, verdicts = results["throughput"], results["targets"]
    out = [
        f"Telemetry capture benchmark: {results['parameters']['tasks']:,} tasks "
        f"({3 * results['parameters']['tasks']:,} capture calls per run), "
        f"{results['machine']['cores']} cores",
        "",
        "Caller-side cost of one call, microseconds (medians over rounds; max = worst):",
    ]
    out += _table(["condition", "call", "p50", "p99", "p99.9", "max"], latency_rows(results))
    out += [
        "",
        "Writer state when the calls started; slow calls, and how many overlapped a GC pause"
        " (+GC) or a model call in the executor thread (+encode):",
    ]
    out += _table(
        [
            "condition",
            "encoding",
            "storing",
            "idle",
            ">50us",
            "+GC",
            "+encode",
            ">1ms",
            "+GC",
            "+encode",
            "neither",
            "GC gen0/1/2",
            "max ms",
        ],
        state_rows(results),
    )
    out += ["", "Throughput (records/s):"]
    out += _table(["run", "records", "seconds", "records/s", "note"], throughput_rows(results))
    r = t["ratios"]
    out += [
        "",
        f"capture/model-alone throughput ratio: {r['capture_over_model']:.3f}",
        f"share of end-to-end time in database writes (db alone / end to end): {r['db_share']:.1%}",
        f"in the run: model encode {r['in_run_encode_share']:.1%} of the time, "
        f"store_executions {r['in_run_store_share']:.1%}, of it while no model call ran "
        f"{r['db_exposed_share']:.1%}",
        f"pipeline ceiling (hash embedder) / real model: {r['hash_over_real']:.1f}x",
        "",
        "Targets:",
    ]
    out += [
        f"  {'PASS' if v['pass'] else 'FAIL'}  {v['target']}: {v['measured']}" for v in verdicts
    ]
    return "\n".join(out)
