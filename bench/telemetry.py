"""Telemetry capture: what a ``capture_*`` call costs its caller, and whether the pipeline
keeps up with the model.

* **The caller's side**: every call of ``tasks`` tasks (3 events each, 4 concurrent
  producers) timed around its ``await``, p50 and p99 in microseconds (median over
  ``rounds``), in three conditions taken in turn (order reversed every other round, so
  that drift falls on all): the writer idle (no batch due), the real model busy embedding
  and writing batches (``durability="write"``, the default), and the same with
  ``durability="fsync"`` (the journal fsync'd every second in the background).
* **Throughput**: ``segments`` slices of the tasks, each run three ways back to back: the
  model alone on its descriptions (``embed_many`` in batches of ``batch_size``), the capture
  end to end (first call to ``flush()`` with every row written), and the database writes
  alone (that run's batches with the model's vectors). capture / model alone near 1 means
  the model bounds the pipeline; the database's share is the writes while no model call
  ran (what it adds to the run) and the writes alone over the end-to-end time. Also: how
  long after its last event each task's row was written (what the watermark lag covers).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orb_learning import AsyncEmbeddingService, LearningDatabase, TelemetryCapture
from orb_learning.testing import make_stream

from . import server
from .telemetry_probes import (
    TimedDatabase,
    TimedHash,
    TimedModel,
    microseconds,
    overlap_seconds,
    produce,
    shares,
)
from .timing import Reference, latency, log

CONDITIONS = ("writer idle", "model busy", "model busy, fsync")


@dataclass(frozen=True)
class Parameters:
    tasks: int = 5_000
    rounds: int = 3
    segments: int = 5
    batch_size: int = 100
    producers: int = 4
    seed: int = 7


QUICK = Parameters(tasks=300, rounds=1, segments=2)


class Runs:
    """Databases on one server (dropped at the end) and the journals' temporary directory."""

    def __init__(self, server_url: str, p: Parameters) -> None:
        self.server_url, self.p = server_url, p
        self.stack = contextlib.AsyncExitStack()
        self.spool = Path(self.stack.enter_context(tempfile.TemporaryDirectory()))

    async def database(self, label: str) -> str:
        return await self.stack.enter_async_context(server.database(self.server_url, label))

    async def capture(
        self,
        url: str,
        embedder: Any,
        calls: list[Any],
        *,
        wait_all: bool,
        writer_idle: bool = False,
        durability: str = "write",
    ) -> dict[str, Any]:
        """One TelemetryCapture: the timed producers, then every row written (``wait_all``)
        or a prompt shutdown (the rest stays in its journal). ``writer_idle``: no batch due
        while the calls run (batch_size above the calls, batch_timeout an hour)."""
        db = TimedDatabase(url, embedder)
        await db.initialize()
        size, timeout = (len(calls) * 10**6, 3600.0) if writer_idle else (self.p.batch_size, 5.0)
        capture = TelemetryCapture(
            None,
            db,
            batch_size=size,
            batch_timeout=timeout,
            spool_path=self.spool / uuid.uuid4().hex / "spool.jsonl",
            durability=durability,
        )
        await capture.initialize()
        while not capture.stats()["database_ready"]:
            await _sleep()
        started = time.perf_counter()
        durations, completed = await produce(capture, calls)
        flushed = await capture.flush(900) if wait_all else None
        seconds = time.perf_counter() - started
        stats = capture.stats()
        await capture.shutdown(timeout=30.0 if wait_all else 1.0)
        await db.close()
        while embedder.clock.active:  # a cancelled writer's model call ends in its thread
            await _sleep()
        delays = [
            (db.written_at[t] - at) / 1e9 for t, at in completed.items() if t in db.written_at
        ]
        return {
            "durations": durations,
            "seconds": seconds,
            "flushed": flushed,
            "stats": stats,
            "batches": db.batches,
            "store_spans": db.clock.spans,
            "delays": delays,
        }


async def _sleep() -> None:
    await asyncio.sleep(0.01)


async def model_alone(model: TimedModel, texts: list[str], batch: int) -> tuple[float, dict]:
    """The descriptions through ``embed_many`` (as the database's own service), ``batch`` at a
    time: seconds, and each text's vector (for the writes alone)."""
    service = AsyncEmbeddingService(model)
    await service.start()
    vectors: dict[str, Any] = {}
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        vectors.update(zip(chunk, await service.embed_many(chunk), strict=True))
    seconds = time.perf_counter() - started
    await service.close()
    return seconds, vectors


async def db_alone(url: str, batches: list[list[Any]], vectors: dict[str, Any]) -> float:
    """The end-to-end run's batches, in its order, with the model's vectors precomputed."""
    async with LearningDatabase(url, embedder=TimedHash(), preload_model=False) as db:
        prepared = [(b, [vectors[r.task_description] for r in b]) for b in batches]
        started = time.perf_counter()
        for records, embeddings in prepared:
            await db.store_executions(records, embeddings=embeddings)
        return time.perf_counter() - started


async def caller_side(runs: Runs, model: TimedModel, reference: Reference) -> dict[str, Any]:
    url, p = await runs.database("latency"), runs.p
    calls = shares(make_stream(p.tasks, seed=p.seed), p.producers)
    figures: dict[str, list[dict[str, float]]] = {c: [] for c in CONDITIONS}
    references: dict[str, list[float]] = {c: [] for c in CONDITIONS}
    for number in range(p.rounds):
        for condition in CONDITIONS if number % 2 == 0 else CONDITIONS[::-1]:
            log(f"telemetry: caller's side, round {number + 1}: {condition}")
            idle = condition == "writer idle"
            run = await runs.capture(
                url,
                TimedHash() if idle else model,
                calls,
                wait_all=False,
                writer_idle=idle,
                durability="fsync" if "fsync" in condition else "write",
            )
            figures[condition].append(microseconds(run["durations"]))
            references[condition].append((await reference.burst(10))["p50"])
    return {
        condition: {
            "rounds": rounds_,
            "p50": statistics.median(r["p50"] for r in rounds_),
            "p99": statistics.median(r["p99"] for r in rounds_),
            "reference": latency(references[condition]),
        }
        for condition, rounds_ in figures.items()
    }


async def throughput(runs: Runs, model: TimedModel, reference: Reference) -> dict[str, Any]:
    p = runs.p
    tasks = make_stream(p.tasks, seed=p.seed + 1)
    real, alone = await runs.database("real"), await runs.database("alone")
    segments, delays = [], []
    for k in range(p.segments):
        part = tasks[k * len(tasks) // p.segments : (k + 1) * len(tasks) // p.segments]
        texts = [t.expected["task_description"] for t in part]
        log(f"telemetry: segment {k + 1}/{p.segments}, {len(part)} tasks")
        model.clock.spans.clear()
        if k % 2:  # A B, B A, ...: drift falls on both
            run = await runs.capture(real, model, shares(part, p.producers), wait_all=True)
            encodes = list(model.clock.spans)
            model_seconds, vectors = await model_alone(model, texts, p.batch_size)
        else:
            model_seconds, vectors = await model_alone(model, texts, p.batch_size)
            model.clock.spans.clear()
            run = await runs.capture(real, model, shares(part, p.producers), wait_all=True)
            encodes = list(model.clock.spans)
        store = sum(end - start for start, end in run["store_spans"]) / 1e9
        exposed = store - overlap_seconds(run["store_spans"], encodes)
        segments.append(
            {
                "tasks": len(part),
                "model_seconds": round(model_seconds, 3),
                "capture_seconds": round(run["seconds"], 3),
                "db_alone_seconds": round(await db_alone(alone, run["batches"], vectors), 3),
                "db_exposed_seconds": round(exposed, 3),
                "rows_written": run["stats"]["records_written"],
                "rejected": run["stats"]["events_rejected"],
                "dead_letters": run["stats"]["dead_letters"],
                "flushed": run["flushed"],
                "reference_p50": (await reference.burst(10))["p50"],
            }
        )
        delays += run["delays"]
    ratio = [s["model_seconds"] / s["capture_seconds"] for s in segments]
    share = [s["db_alone_seconds"] / s["capture_seconds"] for s in segments]
    exposed_share = [s["db_exposed_seconds"] / s["capture_seconds"] for s in segments]
    ordered = sorted(delays)
    return {
        "segments": segments,
        "model_texts_per_second": round(p.tasks / sum(s["model_seconds"] for s in segments), 1),
        "capture_rows_per_second": round(p.tasks / sum(s["capture_seconds"] for s in segments), 1),
        "capture_over_model": round(statistics.median(ratio), 3),
        "db_alone_share": round(statistics.median(share), 4),
        "db_exposed_share": round(statistics.median(exposed_share), 4),
        "row_delay_seconds": {
            "p50": round(statistics.median(ordered), 3),
            "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 3),
            "max": round(ordered[-1], 3),
        },
        "all_rows_written": sum(s["rows_written"] for s in segments) == p.tasks
        and not any(s["rejected"] or s["dead_letters"] for s in segments),
    }


async def measure(server_url: str, reference: Reference, p: Parameters) -> dict[str, Any]:
    model = TimedModel()
    model.load()
    runs = Runs(server_url, p)
    async with runs.stack:
        log("telemetry: warm-up")
        warm = await runs.database("warm")
        await runs.capture(
            warm, TimedHash(), shares(make_stream(300, seed=99), p.producers), wait_all=True
        )
        return {
            "backend": model.backend,
            "tasks": p.tasks,
            "batch_size": p.batch_size,
            "producers": p.producers,
            "caller_side": await caller_side(runs, model, reference),
            "throughput": await throughput(runs, model, reference),
        }
