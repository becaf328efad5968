"""The one retry policy: capped exponential backoff with jitter, for transient errors only.

The telemetry writer, the telemetry pipeline's connection and the view refresher all wait
out a server that is away through :func:`retry`, so they agree on what is worth retrying
(:attr:`OrbLearningError.transient <orb_learning.errors.OrbLearningError.transient>`) and
on how long to wait. Errors that retrying cannot fix (a bad record, a missing schema, a
privilege) are raised at once, for the caller to handle.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import is_transient

__all__ = ["Backoff", "Stopped", "retry"]

logger = logging.getLogger("orb_learning")
_T = TypeVar("_T")


class Stopped(Exception):
    """The wait between two attempts was cut short by ``stop``: give up now."""


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Delays between attempts: ``initial`` x ``multiplier`` ** attempt, at most
    ``maximum`` seconds, each shortened by up to ``jitter`` (a fraction) so that many
    clients do not come back at the same instant."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failure (0-based)."""
        exponent = min(attempt, 64)  # beyond that the cap holds anyway
        base = min(self.maximum, self.initial * self.multiplier**exponent)
        return base * (1.0 - self.jitter * random.random())


async def retry(
    action: Callable[[], Awaitable[_T]],
    *,
    backoff: Backoff,
    what: str,
    stop: asyncio.Event | None = None,
    attempts: int | None = None,
    log_every: int = 10,
) -> _T:
    """Run ``action`` until it succeeds; after a transient error wait ``backoff`` and try
    again. A non-transient error is raised at once; so is the last transient one when
    ``attempts`` (None: no limit) are used up. ``stop`` set during a wait raises
    :class:`Stopped` (from the last error). The first failure and every ``log_every``-th
    are logged at WARNING with ``what`` and the error."""
    attempt = 0
    while True:
        try:
            return await action()
        except Exception as exc:
            if not is_transient(exc) or (attempts is not None and attempt + 1 >= attempts):
                raise
            delay = backoff.delay(attempt)
            if attempt % log_every == 0:
                logger.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            if await _stopped_within(stop, delay):
                raise Stopped(f"{what}: stopped while retrying") from exc
        attempt += 1


async def _stopped_within(stop: asyncio.Event | None, delay: float) -> bool:
    if stop is None:
        await asyncio.sleep(delay)
        return False
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        return False
    return True
