"""Latency of async calls: warm-up, then calls interleaved round-robin across cases.

Interleaving matters on a shared 2-core machine: a burst of background load hits every
case of a round alike, so the ratios between cases stay meaningful even when the
absolute figures move.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

Call = Callable[[], Awaitable[Any]]
SLOW_MS = 100.0
REFERENCE = "reference"
REFERENCE_SQL = "SELECT sum(i) FROM generate_series(1, 20000) AS i"
"""A fixed piece of server work, timed in the same rounds as the searches. This host's
speed drifts by up to 2x over minutes (the same searches on the same cached data took
6.2 ms p50 at one moment and 10.3 ms seven minutes later, the reference moving with
them), so each phase's p50 is read next to its reference's."""


def reference_call(connection: Any) -> Call:
    """The reference on ``connection`` (an asyncpg connection of its own)."""

    async def call() -> Any:
        return await connection.fetchval(REFERENCE_SQL)

    return call


@dataclass(frozen=True)
class Latency:
    """Milliseconds over ``calls`` timed calls."""

    calls: int
    p50: float
    p95: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_ms: list[float]) -> Latency:
        if len(samples_ms) == 1:
            only = samples_ms[0]
            return cls(1, only, only, only, only, only)
        cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
        return cls(
            calls=len(samples_ms),
            p50=statistics.median(samples_ms),
            p95=cuts[94],
            mean=statistics.fmean(samples_ms),
            min=min(samples_ms),
            max=max(samples_ms),
        )

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Measured:
    """Latencies of several cases timed in the same rounds, and the load around them."""

    latencies: dict[str, Latency]
    loadavg_before: float
    loadavg_after: float
    seconds: float


async def round_robin(
    cases: dict[str, Call],
    *,
    calls: int,
    warmup: int = 10,
    budget_seconds: float = 15.0,
    min_calls: int = 20,
) -> Measured:
    """Warm each case up, then time rounds that call every case once, in order.

    A case gets ``calls`` timed calls, or fewer when that would take more than
    ``budget_seconds`` (judged from its warm-up), but never fewer than ``min_calls``.
    A case whose first call takes over 100 ms is warmed up with 3 calls, not ``warmup``.
    """
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    planned: dict[str, int] = {}
    for name, call in cases.items():
        warm = [await timed(call)]
        for _ in range((warmup if warm[0] <= SLOW_MS else min(warmup, 3)) - 1):
            warm.append(await timed(call))
        mean_seconds = statistics.fmean(warm) / 1000
        affordable = int(budget_seconds / mean_seconds) if mean_seconds > 0 else calls
        planned[name] = max(min(calls, min_calls), min(calls, affordable))
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_number in range(max(planned.values(), default=0)):
        for name, call in cases.items():
            if round_number < planned[name]:
                samples[name].append(await timed(call))
    return Measured(
        latencies={name: Latency.of(values) for name, values in samples.items()},
        loadavg_before=load_before,
        loadavg_after=os.getloadavg()[0],
        seconds=time.perf_counter() - started,
    )


async def timed(call: Call) -> float:
    """Milliseconds of one call."""
    started = time.perf_counter_ns()
    await call()
    return (time.perf_counter_ns() - started) / 1e6


def log(message: str) -> None:
    """Progress of a benchmark command, on stderr (the tables go to stdout)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)
