"""``TELEMETRY.md``: the telemetry benchmark's verdicts against the issue's targets and its
report, every figure from ``telemetry.json``."""

from __future__ import annotations

import statistics
from typing import Any

from bench import telemetry_compare
from bench.telemetry_report import (
    ALL,
    TARGET_DB_SHARE,
    TARGET_MODEL_RATIO,
    TARGET_P99_US,
    latency_rows,
    state_rows,
    throughput_rows,
)

IDLE_W = "writer idle, default GC"
DEFAULT, FROZEN = "real model busy, default GC", "real model busy, gc.freeze()"
FSYNC = "real model busy, durability='fsync'"
FEWER = "real model busy, torch threads = cores - 1 (what-if)"
E2E, HASH = "throughput run, real model, default GC", "hash embedder runs, default GC"
RECORD, AWAIT = "ExecutionRecord(**fields)", "await trivial coroutine"
WRITE = "os.write of a 400-byte line"


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Pass/fail against the issue's targets: the caller's p99 as the median over rounds,
    the throughput ratios as the median over segments (sums over segments beside them)."""
    conditions, ratios = results["caller_side"]["conditions"], results["throughput"]["ratios"]
    p99 = {name: c["by_label"][ALL]["p99"] for name, c in conditions.items()}
    rounds = _list(conditions[DEFAULT]["by_label"][ALL]["p99_per_round"], ".1f")
    return [
        {
            "target": f"one capture_* call, caller's side, p99 < {TARGET_P99_US:g} us with the "
            "writer busy (real model, default GC; median of the rounds' p99)",
            "pass": p99[DEFAULT] < TARGET_P99_US,
            "measured": f"p99 {p99[DEFAULT]:.1f} us (rounds: {rounds}); "
            + (f"durability='fsync': {p99[FSYNC]:.1f} us; " if FSYNC in p99 else "")
            + f"gc.freeze(): {p99[FROZEN]:.1f} us; writer idle: {p99[IDLE_W]:.1f} us; torch "
            f"threads = cores - 1 (what-if): {p99[FEWER]:.1f} us; during the throughput runs: "
            f"{p99[E2E]:.1f} us",
        },
        {
            "target": f"database writes under {TARGET_DB_SHARE:.0%} of the end-to-end time "
            "(the time they add to it: writes while no model call runs, real model; median "
            "of the segments)",
            "pass": ratios["db_exposed_share_median"] < TARGET_DB_SHARE,
            "measured": f"{ratios['db_exposed_share_median']:.1%} (segments: "
            f"{_list(ratios['db_exposed_share_per_segment'], '.1%')}; sums: "
            f"{ratios['db_exposed_share']:.1%}); the writes themselves, overlapped or not: "
            f"{ratios['in_run_store_share']:.1%} inside the runs, and the same batches "
            f"written alone take {ratios['db_share_median']:.1%} of the end-to-end time "
            f"(segments: {_list(ratios['db_share_per_segment'], '.1%')})",
        },
        {
            "target": "throughput bounded by embedding speed: capture / model alone >= "
            f"{TARGET_MODEL_RATIO:.2f} (median of the segments)",
            "pass": ratios["capture_over_model_median"] >= TARGET_MODEL_RATIO,
            "measured": f"{ratios['capture_over_model_median']:.3f} (segments: "
            f"{_list(ratios['capture_over_model_per_segment'], '.3f')}; sums: "
            f"{ratios['capture_over_model']:.3f}; the model's own share of the end-to-end time:"
            f" {ratios['in_run_encode_share']:.3f}; its calls ran "
            f"{ratios['in_run_encode_over_model_alone']:.2f}x as long as alone)"
            + _short(ratios["capture_over_model_median"], TARGET_MODEL_RATIO),
        },
    ]


def _short(value: float, target: float) -> str:
    return f"; {target - value:.3f} short of the target" if value < target else ""


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:,.1f}" if abs(c) >= 10 else f"{c:.2f}"
    return f"{c:,}" if isinstance(c, int) else str(c)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]


def paragraph(results: dict[str, Any]) -> str:
    """What the figures say, written from the figures (so that a rerun stays honest)."""
    cond, t = results["caller_side"]["conditions"], results["throughput"]
    r, threads = t["ratios"], results["torch_threads"]
    busy, idle, frozen, fewer = (cond[n]["by_label"] for n in (DEFAULT, IDLE_W, FROZEN, FEWER))
    over = cond[DEFAULT]["slow_calls"][f"over {TARGET_P99_US:g} us"]
    worst = cond[DEFAULT]["slow_calls"]["over 1000 us"]
    gc = cond[DEFAULT]["gc"]
    speeds = threads["model_texts_per_second"]
    fast, slow_ = (statistics.median(speeds[str(threads[k])]) for k in ("default", "what_if"))
    if worst["overlapping_encode"] * 2 >= worst["count"] > 0:
        tail = (
            f"The calls over 1 ms ({worst['count']:,} in the busy rounds) mostly overlapped a "
            f"model call in the writer's thread ({worst['overlapping_encode']:,}; "
            f"{worst['overlapping_gc_pause']:,} overlapped a garbage collection, "
            f"{worst['overlapping_neither']:,} neither)."
        )
    else:
        tail = (
            f"Of the {worst['count']:,} calls over 1 ms in the busy rounds, "
            f"{worst['overlapping_encode']:,} overlapped a model call in the writer's thread,"
            f" {worst['overlapping_gc_pause']:,} a garbage collection, "
            f"{worst['overlapping_neither']:,} neither."
        )
    tail += (
        f" Over {TARGET_P99_US:g} us: {over['count']:,} calls, "
        f"{over['overlapping_gc_pause']:,} of them with a collection."
    )
    parts = [
        f"**Caller's side.** A capture call costs {idle[ALL]['p50']:.1f} us at the median "
        f"and {idle[ALL]['p99']:.1f} us at p99 with the writer idle, and "
        f"{busy[ALL]['p50']:.1f} / {busy[ALL]['p99']:.1f} us while the writer runs the real"
        " model: the median is the call's own work (shape checks, the event read into JSON "
        "text, that line appended to the journal with one os.write"
        + (f" (such a write alone: {busy[WRITE]['p50']:.1f} us)" if WRITE in busy else "")
        + " and to the inbox; parsing, validation and correlation run after it returns), "
        f"{busy[ALL]['p50'] / busy[RECORD]['p50']:.2f}x the cost of "
        f"building one ExecutionRecord ({busy[RECORD]['p50']:.1f} us) and "
        f"{busy[ALL]['p50'] / busy[AWAIT]['p50']:.0f}x an await of a trivial coroutine "
        f"({busy[AWAIT]['p50']:.2f} us) timed beside it; a routing decision costs "
        f"{busy['routing (mapping)']['p50']:.0f} us, a pool start "
        f"{busy['pool start']['p50']:.0f} us.",
        tail,
        _fsync(cond, busy),
        f"With {threads['what_if']} torch thread(s) instead of {threads['default']} on "
        f"{results['machine']['cores']} cores (a what-if), the busy p99 is "
        f"{fewer[ALL]['p99']:.1f} us ({_lower(fewer, busy)}) and the model alone embeds "
        f"{slow_:.0f} texts/s against {fast:.0f}"
        + (
            "."
            if results["model"].get("backend", "torch") == "torch"
            else f" (the {results['model']['backend']} backend does not run on torch's "
            "threads: for it this what-if is only a rerun of the busy condition)."
        ),
        f"During the calls of the busy rounds the cyclic GC ran {gc['gen0']['collections']}"
        f" young (gen0) collections of at most {gc['gen0']['max_ms']:.1f} ms, "
        f"{gc['gen1']['collections']} gen1 of at most {gc['gen1']['max_ms']:.1f} ms and "
        f"{gc['gen2']['collections']} full (gen2) ones; gc.freeze() only spares full "
        f"collections the frozen objects, and gives p99 {frozen[ALL]['p99']:.1f} us "
        f"({_lower(frozen, busy)}).",
        f"**Throughput.** Segment by segment (median), the capture stores "
        f"{r['capture_over_model_median']:.2f}x as many records per second as the model "
        f"alone embeds. The writer embeds batch N+1 while batch N is written: inside the "
        f"runs the model runs {r['in_run_encode_share']:.1%} of the time, the writes "
        f"{r['in_run_store_share']:.1%}, and the writes while no model call runs (the time"
        f" the database adds) {r['db_exposed_share_median']:.1%}; the same batches written "
        f"alone take {r['db_share_median']:.1%} of the end-to-end time. What is left "
        f"between the model calls ({r['in_run_model_idle_share']:.1%} of the run) is the "
        "exposed writes, the first batch's wait for batch_size records or batch_timeout, "
        "and the last batch's write. The model's own calls run "
        f"{r['in_run_encode_over_model_alone']:.2f}x as long as alone (above 1: they share"
        " the cores with PostgreSQL's writes, the capture calls or other load), so that "
        "capture / model alone is about the model's share of the run over that slowdown "
        f"({r['in_run_encode_share']:.3f} / {r['in_run_encode_over_model_alone']:.3f} = "
        f"{r['in_run_encode_share'] / r['in_run_encode_over_model_alone']:.3f}): what keeps"
        " the ratio below 1 is less the database's time on the writer's path "
        f"({r['db_exposed_share_median']:.1%}) than the model's calls running slower while"
        " PostgreSQL writes beside them (and whatever else ran) on the machine's cores. "
        "With a "
        f"trivial embedder the pipeline stores "
        f"{t['end_to_end_hash']['records_per_second']:.0f} records/s, "
        f"{r['hash_over_real']:.1f}x the real model's end-to-end rate; there the database "
        f"writes alone take {r['hash_db_share']:.0%} of the time (its hash vectors cost "
        f"{r['hash_db_alone_over_real_db_alone']:.1f}x the model's to index).",
    ]
    return " ".join(part for part in parts if part)


def render(results: dict[str, Any]) -> str:
    m, s, p = results["machine"], results["server"], results["parameters"]
    t, cond = results["throughput"], results["caller_side"]["conditions"]
    e2e, model = t["end_to_end_real"], results["model"]
    run, ratios = e2e["run"], t["ratios"]
    load = results["load_average"]
    out = [
        "# Telemetry capture benchmark",
        "",
        f"`python bench/telemetry.py --tasks {p['tasks']}` ({results['finished_at']}, "
        f"{results['total_seconds']:.0f} s). The figures depend on the machine and on "
        "what else ran on it: compare figures of one run (the ratios), not of different runs.",
        "",
        "## Machine",
        "",
        f"- uname: `{m['uname']}`",
        f"- CPU: {m['cpu']}; cores: {m['cores']}; memory: {m['memory']}",
        f"- Python: {m['python']} (GC thresholds {tuple(m['gc_threshold'])}, thread switch "
        f"interval {m['switch_interval_ms']:g} ms)",
        f"- PostgreSQL: {s['version']}; pgvector {s['pgvector']} ({p['server']} server)",
        f"- orb-learning {m['orb_learning']} at {m['commit']}; model {model['name']}, backend "
        f"{model.get('backend', 'torch')} (loaded in "
        f"{model['load_seconds']:.1f} s; torch threads {model['torch_threads']})",
        f"- load average at start / end: {_load(load['start'])} / {_load(load['end'])}",
        "",
        "## Parameters",
        "",
        f"{p['tasks']:,} tasks of 3 events (routing decision, pool start, outcome) per run, "
        f"sent by {p['producers']} concurrent producers that yield to the event loop between "
        f"calls; capture `batch_size={p['batch_size']}`, other settings default; "
        f"{p['rounds']} caller-side rounds per condition; {p['segments']} segments for the "
        f"throughput; {p['reps']} hash-embedder runs; seed {p['seed']}. Routing "
        "decisions alternate between a mapping and an object whose tier is an Enum; "
        "task_data carries a 30-word description, repo, files, estimated tokens and "
        "metadata; outcomes alternate between an execution outcome and a pool's raw result; "
        "every fifth task's outcome arrives before its routing decision.",
        "",
        "## Against the targets",
        "",
    ]
    out += _table(
        ["target", "measured", "verdict"],
        [[v["target"], v["measured"], "PASS" if v["pass"] else "FAIL"] for v in results["targets"]],
    )
    out += [
        "",
        paragraph(results),
        "",
        *telemetry_compare.render(results),
        *telemetry_compare.render_series(results),
        "## Caller-side cost of one call (microseconds)",
        "",
        "Timed with `time.perf_counter_ns()` around each `await`. With several rounds: the "
        "median of each round's p50/p99/p99.9, and max = the worst round. The baselines are "
        "timed by the same producers between the capture calls, so under the same conditions."
        " Each round is a new `TelemetryCapture` on the same database, starts with "
        "`gc.collect()` and is shut down after its calls (what is not written by then stays"
        " in its journal, in a temporary directory).",
        "",
    ]
    out += [
        f"- **{name}** ({c['rounds']} round(s) of {c['by_label'][ALL]['n_per_round']:,} capture "
        f"calls, {c['window_seconds']:.2f} s each): {c['description']}."
        for name, c in cond.items()
    ]
    out += ["", *_table(["condition", "call", "p50", "p99", "p99.9", "max"], latency_rows(results))]
    out += [
        "",
        "Writer state when the capture calls started (model encoding in its thread; "
        "`store_executions` running but not encoding; idle); the calls over 50 us and over "
        "1 ms, and how many of them overlapped a cyclic-GC collection (+GC) or a model call "
        "in the writer's executor thread (+encode), or neither; the cyclic GC's collections "
        "during the calls (gen0/gen1/gen2, all rounds) and the longest of each:",
        "",
    ]
    out += _table(
        [
            "condition",
            "encoding",
            "storing",
            "idle",
            "> 50 us",
            "+GC",
            "+encode",
            "> 1 ms",
            "+GC",
            "+encode",
            "neither",
            "GC gen0/1/2",
            "max ms",
        ],
        state_rows(results),
    )
    out += [
        "",
        "## Throughput",
        "",
        f"The tasks are split into {p['segments']} segments; each segment runs, back to back"
        " (alternating which comes first, so that the machine's drift falls on both): the "
        "model alone on the segment's descriptions, through `AsyncEmbeddingService.embed_many`"
        " (as the database's own service: chunks of 64, one executor thread), `batch_size` "
        "texts per call; the capture end to end, from the first capture call to `flush()` "
        "returning with every record written (a new `TelemetryCapture`, the rows accumulating"
        " in one database); then the database writes alone: that run's batches, in its "
        "order, through `store_executions(records, embeddings=...)` with the model's vectors "
        "(rows accumulating in a second database). Totals are sums over the segments; the "
        "hash-embedder runs capture all the tasks at once, each into a new database.",
        "",
    ]
    out += _table(["run", "records", "seconds", "records/s", "note"], throughput_rows(results))
    out += [
        "",
        f"- capture / model-alone throughput: **{ratios['capture_over_model']:.3f}** (per "
        f"segment: {_list(ratios['capture_over_model_per_segment'], '.3f')}; median "
        f"{ratios['capture_over_model_median']:.3f})",
        f"- database writes alone / end to end: **{ratios['db_share']:.1%}** (per segment: "
        f"{_list(ratios['db_share_per_segment'], '.1%')}; median "
        f"{ratios['db_share_median']:.1%})",
        f"- inside the end-to-end run: model encode {run['encode_seconds']:.1f} s "
        f"({ratios['in_run_encode_share']:.1%}); `store_executions` (validation, COPY, "
        f"upsert, with the vectors embedded ahead) {run['store_seconds']:.1f} s "
        f"({ratios['in_run_store_share']:.1%}), {run['store_calls']} calls, of which "
        f"{run['store_encode_overlap_seconds']:.1f} s while the model embedded the next batch"
        f" and {run['db_exposed_seconds']:.1f} s ({ratios['db_exposed_share']:.1%}) while it "
        "did not",
        f"- process CPU / wall time: {run['cpu_per_wall']:.2f} end to end, "
        f"{t['model_alone']['cpu_per_wall']:.2f} for the model alone",
        f"- the model's own time in the end-to-end run / the model alone: "
        f"{ratios['in_run_encode_over_model_alone']:.3f} (above 1: the model ran slower in the "
        "run, e.g. sharing the cores with the capture calls, PostgreSQL or other load)",
        f"- hash embedder end to end vs real model: {ratios['hash_over_real']:.1f}x faster; "
        f"its own database writes alone (same batches, hash vectors) take "
        f"{ratios['hash_db_share']:.1%} of its end-to-end time, and "
        f"{ratios['hash_db_alone_over_real_db_alone']:.2f}x as long as writing the model's "
        "vectors (the HNSW index's insertion cost depends on the vectors: random unit "
        "vectors are not the model's)",
        f"- checks: {run['rows']:,} rows for {p['tasks']:,} tasks; "
        f"{run['records_written']:,} records written, {run['events_rejected']} events "
        f"rejected, {run['dead_letters']} dead letters; every flush() returned {run['flushed']}",
        "",
        "Every figure, per round, is in `telemetry.json`.",
        "",
    ]
    return "\n".join(out)


def _fsync(cond: dict[str, Any], busy: dict[str, Any]) -> str:
    if FSYNC not in cond:
        return ""
    fsync = cond[FSYNC]["by_label"][ALL]
    return (
        f"With `durability='fsync'` (the journal fsync'd every second by a background task, "
        f"never in the call) the busy p50 / p99 are {fsync['p50']:.1f} / {fsync['p99']:.1f} us"
        f" (against {busy[ALL]['p50']:.1f} / {busy[ALL]['p99']:.1f} us with the default, "
        "os.write only)."
    )


def _lower(this: dict[str, Any], than: dict[str, Any]) -> str:
    return "lower" if this[ALL]["p99"] < than[ALL]["p99"] else "not lower"


def _list(values: Any, spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def _load(values: Any) -> str:
    return ", ".join(f"{v:.2f}" for v in values)
