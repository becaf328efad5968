"""What the figures were measured on: the machine, the server and the library."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

import orb_learning

REPOSITORY = Path(__file__).resolve().parent.parent
SETTINGS = (
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "max_parallel_workers_per_gather",
    "jit",
    "random_page_cost",
)


def _read(path: str, prefix: str) -> str:
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, Any]:
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uname = " ".join(platform.uname())
    return {
        "uname": uname,
        "cpu": _read("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory": _read("/proc/meminfo", "MemTotal"),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
    }


def _git(*args: str) -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return result.stdout.strip()


def library() -> dict[str, Any]:
    changed = _git("status", "--porcelain", "--", "orb_learning", "alembic")
    return {
        "version": orb_learning.__version__,
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_library_changes": bool(changed),
    }


async def server(url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(url)
    try:
        version = await connection.fetchval("SELECT version()")
        pgvector = await connection.fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
        )
        settings = {name: await connection.fetchval(f"SHOW {name}") for name in SETTINGS}
    finally:
        await connection.close()
    return {"version": version, "pgvector": pgvector, "settings": settings}
