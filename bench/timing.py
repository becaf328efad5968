"""Timing: a warm-up, then rounds that call every case once, with the machine reference
timed in the same rounds.

Rounds, because on a shared 2-core host a burst of other work hits every case of a round
alike: ratios between the cases of one group hold when the absolute figures move. The
reference, because this host's speed drifts by up to 2x over minutes (the same searches on
the same cached pages took 6.2 ms p50 and, seven minutes later, 10.3 ms): a group's p50s
are read next to the reference's p50 of the same rounds, never against another phase's.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

Call = Callable[[], Awaitable[Any]]
REFERENCE = "machine reference"
REFERENCE_SQL = "SELECT sum(i) FROM generate_series(1, 20000) AS i"
"""A fixed piece of server work that reads no table: how fast the host was."""
SLOW_MS = 100.0


class Reference:
    """The machine reference on a connection of its own to the server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: asyncpg.Connection | None = None

    async def connect(self) -> None:
        """(Re)connect: after a server restart the old connection is gone."""
        if self.connection is not None and not self.connection.is_closed():
            self.connection.terminate()
        self.connection = await asyncpg.connect(self.url)

    async def __call__(self) -> Any:
        assert self.connection is not None, "Reference.connect() first"
        return await self.connection.fetchval(REFERENCE_SQL)

    async def burst(self, calls: int = 20) -> dict[str, float]:
        """The reference alone, for phases that cannot interleave it (one long run)."""
        return latency([await timed(self) for _ in range(calls)])

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


def latency(samples_ms: list[float]) -> dict[str, float]:
    """p50, p95 and max in ms over the samples, and how many there were."""
    ordered = sorted(samples_ms)
    if len(ordered) > 1:
        p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94]
    else:
        p95 = ordered[-1]
    return {
        "calls": len(ordered),
        "p50": round(statistics.median(ordered), 4),
        "p95": round(p95, 4),
        "max": round(ordered[-1], 4),
    }


async def timed(call: Call) -> float:
    """Milliseconds of one call."""
    started = time.perf_counter_ns()
    await call()
    return (time.perf_counter_ns() - started) / 1e6


async def rounds(
    cases: dict[str, Call],
    reference: Call | None,
    *,
    calls: int,
    warmup: int = 10,
    budget: float = 15.0,
    min_calls: int = 20,
) -> dict[str, Any]:
    """Warm each case up, then time rounds calling every case (and the reference) once.

    A case gets ``calls`` timed calls, or fewer when they would take over ``budget``
    seconds (judged from its warm-up), never fewer than ``min_calls``; a case whose first
    call takes over 100 ms gets 3 warm-up calls. Returns per case and for the reference
    :func:`latency`, the 1-minute load average before and after, and the seconds taken.
    """
    everything = dict(cases) | ({REFERENCE: reference} if reference is not None else {})
    load_before, started = os.getloadavg()[0], time.perf_counter()
    planned: dict[str, int] = {}
    for name, call in everything.items():
        warm = [await timed(call)]
        for _ in range((warmup if warm[0] <= SLOW_MS else min(warmup, 3)) - 1):
            warm.append(await timed(call))
        affordable = int(budget * 1000 / max(statistics.fmean(warm), 1e-6))
        planned[name] = max(min(calls, min_calls), min(calls, affordable))
    samples: dict[str, list[float]] = {name: [] for name in everything}
    for number in range(max(planned.values(), default=0)):
        for name, call in everything.items():
            if number < planned[name]:
                samples[name].append(await timed(call))
    return {
        "cases": {name: latency(samples[name]) for name in cases},
        "reference": latency(samples[REFERENCE]) if reference is not None else None,
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.perf_counter() - started, 2),
    }


class LoadSampler:
    """The 1-minute load average every ``interval`` seconds, in a daemon thread: the run
    reports how busy the host was while each part ran (others' tests share it)."""

    def __init__(self, interval: float = 5.0) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), os.getloadavg()[0]))
            self._stop.wait(interval)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, since: float, until: float | None = None) -> dict[str, float]:
        """min / median / max of the samples taken between ``since`` and ``until``."""
        until = time.time() if until is None else until
        values = [load for at, load in self.samples if since <= at <= until]
        values = values or [os.getloadavg()[0]]
        return {
            "min": round(min(values), 2),
            "median": round(statistics.median(values), 2),
            "max": round(max(values), 2),
        }


def log(message: str) -> None:
    """Progress on stderr (the summary goes to stdout)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)
