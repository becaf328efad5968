"""The one results schema: what a run measured, on what, under which load.

``results.json`` (``SCHEMA``) holds the run's envelope (when, the command, the machine, the
library, the server's settings, the load average) and each part's figures under
``parts``: ``search`` and ``analytics`` as lists of levels, ``embeddings`` and
``telemetry`` as one dict each. Every timed group carries its cases' latencies
(``calls``, ``p50``, ``p95``, ``max``, in ms) and, under ``reference``, the machine
reference timed in the same rounds. ``RESULTS.md`` is rendered from it alone
(:mod:`bench.summary`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

import orb_learning

SCHEMA = "orb-learning-bench/1"
BENCH_DIR = Path(__file__).resolve().parent
REPOSITORY = BENCH_DIR.parent
SETTINGS = ("shared_buffers", "work_mem", "maintenance_work_mem", "effective_cache_size",
            "max_parallel_workers_per_gather", "jit", "random_page_cost")  # fmt: skip


def envelope(command: str) -> dict[str, Any]:
    """A new run's results, before any part has measured."""
    return {
        "schema": SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine(),
        "library": library(),
        "parts": {},
        "load": {},
    }


def merged(out: Path, command: str, parts: list[str]) -> dict[str, Any]:
    """The results in ``out`` with ``parts`` taken out, to be measured again by
    ``command``; the merge is noted under ``merged`` (when, the command, the library, the
    machine), and the run's own envelope stays the first run's."""
    kept = read(out / "results.json")
    for name in parts:
        kept["parts"].pop(name, None)
    note = envelope(command)
    del note["parts"], note["schema"]
    kept.setdefault("merged", []).append({"parts": parts, **note})
    return kept


def _first(path: str, prefix: str) -> str:
    try:
        with open(path) as lines:
            return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(prefix)), "")
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "memory": _first("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


def library() -> dict[str, Any]:
    """The library's version and commit, and whether its files differ from that commit."""
    return {
        "version": orb_learning.__version__,
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_changes": bool(_git("status", "--porcelain", "--", "orb_learning", "alembic")),
    }


async def server(url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(url)
    try:
        version = await connection.fetchval("SHOW server_version")
        pgvector = await connection.fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
        )
        settings = {name: await connection.fetchval(f"SHOW {name}") for name in SETTINGS}
    finally:
        await connection.close()
    return {"postgresql": version, "pgvector": pgvector, "settings": settings}


def write(results: dict[str, Any], out: Path) -> None:
    """``results.json`` and ``RESULTS.md`` in ``out`` (after each part: a long run that
    stops leaves what it measured)."""
    from bench import summary

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "RESULTS.md").write_text(summary.markdown(results))


def read(path: Path) -> dict[str, Any]:
    results: dict[str, Any] = json.loads(path.read_text())
    if results.get("schema") != SCHEMA:
        raise SystemExit(f"{path}: not a results file of this benchmark ({SCHEMA})")
    return results
