"""Benchmark of the telemetry capture: the caller's cost of a capture call while the writer
is busy, and the sustained throughput with the real embedding model.

    python bench/telemetry.py [--tasks 5000] [--dsn URL] [--segments 5] [--rounds 3] [--reps 3]

Without ``--dsn`` it starts an embedded PostgreSQL 18 + pgvector server in a temporary
directory and removes it at the end; with ``--dsn`` (a role allowed to CREATE DATABASE, a
server with pgvector) each run gets a database of its own, dropped at the end. Progress
goes to stderr, the tables to stdout, ``TELEMETRY.md`` and ``telemetry.json`` to ``--out``.

``--before FILE`` compares with an earlier run; ``--series-before A.json B.json
--series-after C.json D.json`` adds the medians of runs made in turn before and after a
change; ``--render FILE`` rewrites ``TELEMETRY.md`` from a saved run with those comparisons.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import telemetry_compare, telemetry_markdown, telemetry_report
from bench.telemetry_markdown import DEFAULT, E2E, FEWER, FROZEN, FSYNC, HASH, IDLE_W
from bench.telemetry_probes import HashEmbedder, TimedModel
from bench.telemetry_runs import (
    BENCH_DIR,
    Bench,
    db_alone,
    machine,
    model_alone,
    server,
    server_info,
    set_torch_threads,
    torch_threads,
)
from bench.telemetry_stream import make_tasks, shares
from bench.timing import log

_NOT_PARAMETERS = (
    "dsn",
    "out",
    "before",
    "same_model",
    "series_before",
    "series_after",
    "render",
)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {
        "parameters": {k: v for k, v in vars(args).items() if k not in _NOT_PARAMETERS},
        "machine": machine(),
        "load_average": {"start": os.getloadavg()},
    }
    results["parameters"]["server"] = "external (--dsn)" if args.dsn else "embedded, temporary"
    tasks = make_tasks(args.tasks, args.seed)
    calls = shares(tasks, args.producers)
    with server(args.dsn) as server_url:
        bench = Bench(server_url, args)
        try:
            results["server"] = await server_info(server_url)
            log(f"server: {results['server']['version'][:40]}; loading the model")
            model = TimedModel()
            t0 = time.perf_counter()
            await asyncio.to_thread(model.load)
            results["model"] = {
                "name": model.name,
                "backend": getattr(model, "backend", "torch"),
                "load_seconds": time.perf_counter() - t0,
                "torch_threads": torch_threads(),
            }
            latency_url = await bench.database("latency")
            log("warm-up (hash embedder, then the model)")
            warm = make_tasks(min(500, args.tasks), args.seed + 1)
            await bench.capture_run(
                latency_url,
                HashEmbedder(),
                shares(warm, args.producers),
                tasks=len(warm),
                wait_all=True,
            )
            await model_alone(model, [t.description for t in warm[:128]], args.batch_size)
            real_url, db_url = await bench.database("real"), await bench.database("db")
            segments = []
            for k in range(args.segments):  # model alone, end to end, db alone, side by side
                part = tasks[
                    k * len(tasks) // args.segments : (k + 1) * len(tasks) // args.segments
                ]
                log(f"segment {k + 1}/{args.segments}: {len(part)} tasks, model alone, end to end")
                texts = [t.description for t in part]
                if k % 2:  # A B, B A, ...: drift falls on both
                    e2e = await bench.capture_run(
                        real_url,
                        model,
                        shares(part, args.producers),
                        tasks=len(part),
                        wait_all=True,
                        keep=True,
                    )
                    alone = await model_alone(model, texts, args.batch_size)
                else:
                    alone = await model_alone(model, texts, args.batch_size)
                    e2e = await bench.capture_run(
                        real_url,
                        model,
                        shares(part, args.producers),
                        tasks=len(part),
                        wait_all=True,
                        keep=True,
                    )
                db = await db_alone(db_url, e2e.pop("batches"), alone.pop("vectors"))
                segments.append({"tasks": len(part), "model": alone, "e2e": e2e, "db": db})
                log(
                    f"  model {alone['seconds']:.1f} s, end to end {e2e['seconds']:.1f} s, "
                    f"database alone {db:.2f} s"
                )
            hash_runs = []
            texts = [t.description for t in tasks]
            hash_vectors = dict(zip(texts, HashEmbedder().encode(texts), strict=True))
            for rep in range(args.reps):
                log(f"end to end with the hash embedder, {rep + 1}/{args.reps}")
                one = await bench.capture_run(
                    await bench.database("hash"),
                    HashEmbedder(),
                    calls,
                    tasks=args.tasks,
                    wait_all=True,
                    keep=True,
                )
                # The same batches with the same (hash) vectors, database writes alone.
                one["db_alone_seconds"] = await db_alone(
                    await bench.database("hashdb"), one.pop("batches"), hash_vectors
                )
                hash_runs.append(one)
            rounds: dict[str, list[dict[str, Any]]] = {
                IDLE_W: [],
                DEFAULT: [],
                FSYNC: [],
                FROZEN: [],
                FEWER: [],
            }
            default_threads, fewer = torch_threads(), max(1, (os.cpu_count() or 1) - 1)
            speed: dict[int, list[float]] = {default_threads: [], fewer: []}
            sample = [t.description for t in tasks[: min(300, len(tasks))]]
            for r in range(args.rounds):  # A B C D, D C B A, ...: drift falls on all
                for threads in speed:  # the model's speed at both settings, side by side
                    set_torch_threads(threads)
                    alone = await model_alone(model, sample, args.batch_size)
                    speed[threads].append(len(sample) / alone["seconds"])
                set_torch_threads(default_threads)
                for name in list(rounds) if r % 2 == 0 else list(rounds)[::-1]:
                    log(f"caller side, round {r + 1}: {name}")
                    set_torch_threads(fewer if name == FEWER else default_threads)
                    one = await bench.capture_run(
                        latency_url,
                        HashEmbedder() if name == IDLE_W else model,
                        calls,
                        tasks=args.tasks,
                        freeze=name == FROZEN,
                        wait_all=False,
                        writer_idle=name == IDLE_W,
                        durability="fsync" if name == FSYNC else "write",
                    )
                    set_torch_threads(default_threads)
                    rounds[name].append(one["analysis"])
            results["torch_threads"] = {
                "default": default_threads,
                "what_if": fewer,
                "model_texts_per_second": {str(k): v for k, v in speed.items()},
            }
        finally:
            await bench.cleanup()
    results["load_average"]["end"] = os.getloadavg()
    results["caller_side"] = {
        "conditions": {
            IDLE_W: telemetry_report.condition(
                rounds[IDLE_W], "baseline: the same calls, no batch due (nothing embeds or writes)"
            ),
            DEFAULT: telemetry_report.condition(
                rounds[DEFAULT], "the writer embeds and writes batches of batch_size meanwhile"
            ),
            FSYNC: telemetry_report.condition(
                rounds[FSYNC],
                "the same with TelemetryCapture(durability='fsync'): the journal fsync'd every "
                "second in the background",
            ),
            FROZEN: telemetry_report.condition(
                rounds[FROZEN], "the same, gc.collect(); gc.freeze() after setup, unfrozen after"
            ),
            FEWER: telemetry_report.condition(
                rounds[FEWER],
                "what-if, not the library's default: the same with torch.set_num_threads(cores"
                " - 1), so that the event loop keeps a core",
            ),
            E2E: telemetry_report.condition(
                [g["e2e"].pop("analysis") for g in segments],
                "the calls of the end-to-end runs below (one per segment)",
            ),
            HASH: telemetry_report.condition(
                [h["analysis"] for h in hash_runs], "the calls of the hash-embedder runs"
            ),
        }
    }
    results["throughput"] = throughput(args, segments, hash_runs)
    if results["throughput"]["end_to_end_real"]["run"]["rows"] != args.tasks:
        log("WARNING: the end-to-end database does not hold one row per task")
    results["targets"] = telemetry_markdown.verdicts(results)
    compare(args, results)
    results["total_seconds"] = time.perf_counter() - started
    results["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return results


def throughput(
    args: argparse.Namespace, segments: list[dict[str, Any]], hash_runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Sums over the segments (time-weighted ratios), each segment's ratios and their
    median; the hash-embedder runs' median."""
    n = args.tasks
    model_s = sum(g["model"]["seconds"] for g in segments)
    e2e_s = sum(g["e2e"]["seconds"] for g in segments)
    db_s = sum(g["db"] for g in segments)
    encode_s = sum(g["e2e"]["encode_seconds"] for g in segments)
    store_s = sum(g["e2e"]["store_seconds"] for g in segments)
    hash_s = statistics.median(h["seconds"] for h in hash_runs)
    per_model = [g["model"]["seconds"] / g["e2e"]["seconds"] for g in segments]
    per_db = [g["db"] / g["e2e"]["seconds"] for g in segments]
    exposed_s = sum(g["e2e"]["db_exposed_seconds"] for g in segments)
    per_exposed = [g["e2e"]["db_exposed_seconds"] / g["e2e"]["seconds"] for g in segments]
    stats = [g["e2e"].pop("stats") for g in segments]

    def row(seconds: float, note: str, **extra: Any) -> dict[str, Any]:
        return {
            "records": n,
            "seconds": seconds,
            "records_per_second": n / seconds,
            "note": note,
            **extra,
        }

    def each(values: list[float]) -> str:
        return " + ".join(f"{v:.1f}" for v in values)

    run = {
        "encode_seconds": encode_s,
        "store_seconds": store_s,
        "store_calls": sum(g["e2e"]["store_calls"] for g in segments),
        "db_exposed_seconds": exposed_s,
        "store_encode_overlap_seconds": sum(
            g["e2e"]["store_encode_overlap_seconds"] for g in segments
        ),
        "cpu_per_wall": sum(g["e2e"]["cpu_seconds"] for g in segments) / e2e_s,
        "rows": segments[-1]["e2e"]["rows"],
        "flushed": all(g["e2e"]["flushed"] for g in segments),
        "events_rejected": sum(s["events_rejected"] for s in stats),
        "dead_letters": sum(s["dead_letters"] for s in stats),
        "records_written": sum(s["records_written"] for s in stats),
    }
    return {
        "model_alone": row(
            model_s,
            "segments: " + each([g["model"]["seconds"] for g in segments]),
            cpu_per_wall=sum(g["model"]["cpu_per_wall"] * g["model"]["seconds"] for g in segments)
            / model_s,
            segments=[g["model"] for g in segments],
        ),
        "end_to_end_real": row(
            e2e_s,
            "segments: " + each([g["e2e"]["seconds"] for g in segments]),
            run=run,
            segments=[g["e2e"] for g in segments],
            stats=stats,
        ),
        "db_alone": row(
            db_s,
            "segments: " + each([g["db"] for g in segments]),
            segments=[g["db"] for g in segments],
        ),
        "end_to_end_hash": row(
            hash_s,
            f"median of {len(hash_runs)} runs of all tasks",
            runs=[
                {k: v for k, v in h.items() if k not in ("analysis", "batches", "stats")}
                for h in hash_runs
            ],
        ),
        "ratios": {
            "capture_over_model": model_s / e2e_s,
            "capture_over_model_per_segment": per_model,
            "capture_over_model_median": statistics.median(per_model),
            "db_share": db_s / e2e_s,
            "db_share_per_segment": per_db,
            "db_share_median": statistics.median(per_db),
            "db_exposed_share": exposed_s / e2e_s,
            "db_exposed_share_per_segment": per_exposed,
            "db_exposed_share_median": statistics.median(per_exposed),
            "in_run_encode_share": encode_s / e2e_s,
            "in_run_store_share": store_s / e2e_s,
            "in_run_model_idle_share": 1 - encode_s / e2e_s,
            "in_run_encode_over_model_alone": encode_s
            / sum(g["model"]["encode_seconds"] for g in segments),
            "hash_over_real": e2e_s / hash_s,
            "hash_db_share": statistics.median(
                h["db_alone_seconds"] / h["seconds"] for h in hash_runs
            ),
            "hash_db_alone_over_real_db_alone": statistics.median(
                h["db_alone_seconds"] for h in hash_runs
            )
            / db_s,
        },
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per run (3 events each)")
    parser.add_argument("--dsn", help="a server of your own (needs CREATE DATABASE, pgvector)")
    parser.add_argument("--rounds", type=int, default=3, help="caller-side rounds per GC mode")
    parser.add_argument("--segments", type=int, default=5, help="model-alone/end-to-end pairs")
    parser.add_argument("--reps", type=int, default=3, help="hash-embedder runs")
    parser.add_argument("--batch-size", type=int, default=100, help="the capture's batch_size")
    parser.add_argument("--producers", type=int, default=4, help="concurrent producers")
    parser.add_argument("--flush-timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=BENCH_DIR)
    parser.add_argument(
        "--before",
        type=Path,
        default=telemetry_compare.DEFAULT_BEFORE,
        help="an earlier run's telemetry.json, compared in TELEMETRY.md ('' for none)",
    )
    parser.add_argument(
        "--same-model",
        type=Path,
        help="a run of this library with the model the --before run used (e.g. "
        "ORB_LEARNING_EMBEDDING_BACKEND=torch): a third column of the comparison",
    )
    parser.add_argument(
        "--series-before",
        type=Path,
        nargs="*",
        help="telemetry.json files of runs before a change, made in turn with --series-after "
        "ones: their medians in TELEMETRY.md",
    )
    parser.add_argument("--series-after", type=Path, nargs="*", help="see --series-before")
    parser.add_argument(
        "--render",
        type=Path,
        help="a saved telemetry.json: write TELEMETRY.md from it (with the comparisons given "
        "here) instead of running",
    )
    args = parser.parse_args(argv)
    if (
        args.tasks < 2 * args.segments
        or min(args.segments, args.rounds, args.reps, args.batch_size, args.producers) < 1
    ):
        parser.error("--tasks >= 2 x --segments; the other counts >= 1")
    return args


def compare(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The comparisons asked for (``--before``, ``--same-model``, ``--series-*``)."""
    if args.before and args.before.is_file():
        results["before"] = telemetry_compare.summary(json.loads(args.before.read_text()))
        results["before"]["file"] = str(args.before)
    if args.series_before and args.series_after:
        results["series"] = telemetry_compare.series(args.series_before, args.series_after)
    if args.same_model and args.same_model.is_file():
        results["same_model"] = telemetry_compare.summary(json.loads(args.same_model.read_text()))


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.render is not None:  # a saved run, with this invocation's comparisons
        results = json.loads(args.render.read_text())
        for key in ("before", "series", "same_model"):
            results.pop(key, None)
        compare(args, results)
    else:
        results = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "telemetry.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / "TELEMETRY.md").write_text(telemetry_markdown.render(results))
    print(telemetry_report.render_text(results))
    log(
        f"wrote {args.out / 'TELEMETRY.md'} and {args.out / 'telemetry.json'} "
        f"({results['total_seconds']:.0f} s)"
    )


if __name__ == "__main__":
    main()
