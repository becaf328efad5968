"""The message bus telemetry listens on: a two-method protocol, its event names, and an
in-process implementation.

The protocol is deliberately small so that any orchestrator's bus fits behind a trivial
adapter (``examples/mahavishnu_bus_adapter.py`` wraps Mahavishnu's, whose message types
are a closed enum). Event names are namespaced strings, never reused orchestrator types,
because the first version's names were relabelled by the real bus and never arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "EVENT_TYPES",
    "EXECUTION_OUTCOME",
    "FEEDBACK",
    "POOL_EXECUTION_COMPLETE",
    "POOL_EXECUTION_START",
    "ROUTING_DECISION",
    "Handler",
    "InProcessMessageBus",
    "MessageBus",
]

logger = logging.getLogger("orb_learning.telemetry")

ROUTING_DECISION = "orb_learning.routing_decision"
POOL_EXECUTION_START = "orb_learning.pool_execution_start"
POOL_EXECUTION_COMPLETE = "orb_learning.pool_execution_complete"
EXECUTION_OUTCOME = "orb_learning.execution_outcome"
FEEDBACK = "orb_learning.feedback"
EVENT_TYPES = (
    ROUTING_DECISION,
    POOL_EXECUTION_START,
    POOL_EXECUTION_COMPLETE,
    EXECUTION_OUTCOME,
    FEEDBACK,
)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


@runtime_checkable
class MessageBus(Protocol):
    """What :class:`~orb_learning.TelemetryCapture` needs from a bus."""

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None: ...

    def subscribe(self, event_type: str, handler: Handler) -> None: ...


class InProcessMessageBus:
    """Fan-out of events to async handlers within one event loop.

    Each handler runs as its own task, so a slow subscriber never delays the publisher.
    A handler's exception is logged with its traceback and counted in ``handler_errors``
    (the first version's bus let them vanish as unretrieved task exceptions).
    """

    def __init__(self) -> None:
        self._handlers: defaultdict[str, list[Handler]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()
        self.handler_errors = 0

    def subscribe(self, event_type: str, handler: Handler) -> None:
        self._handlers[event_type].append(handler)

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        for handler in list(self._handlers.get(event_type, ())):
            task = asyncio.get_running_loop().create_task(self._run(handler, event_type, payload))
            self._tasks.add(task)  # a strong reference until it ends
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every handler started so far has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, handler: Handler, event_type: str, payload: dict[str, Any]) -> None:
        try:
            await handler(payload)
        except Exception:
            self.handler_errors += 1
            logger.exception("handler %r of %s failed", handler, event_type)
