"""orb-learning's ``MessageBus`` over Mahavishnu's bus.

Mahavishnu's message types are a closed enum: any other type is relabelled
STATUS_UPDATE. So the adapter does that on purpose: each telemetry event travels as a
STATUS_UPDATE message whose payload carries the event name (``orb_learning_event``) and
the event (``data``), and the adapter's one STATUS_UPDATE subscriber routes it back to the
handlers of that name. Other STATUS_UPDATE messages are left alone.

    bus = MahavishnuBusAdapter(app.message_bus)
    telemetry = TelemetryCapture(bus, LearningDatabase())
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from orb_learning.telemetry import Handler

try:
    from mahavishnu.mcp.protocols.message_bus import Message, MessageBus, MessageType
except ImportError:  # not inside Mahavishnu: the stand-in next to this file
    from mahavishnu_bus import Message, MessageBus, MessageType

logger = logging.getLogger("orb_learning.mahavishnu")
EVENT_KEY = "orb_learning_event"


class MahavishnuBusAdapter:
    """Implements :class:`orb_learning.MessageBus` (``publish``/``subscribe``)."""

    def __init__(self, bus: MessageBus, *, source_pool_id: str = "orb-learning") -> None:
        self.bus = bus
        self.source_pool_id = source_pool_id
        self._handlers: defaultdict[str, list[Handler]] = defaultdict(list)
        self._published = self._delivered = 0

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        if self._handlers:
            self._published += 1
        await self.bus.publish(
            {
                "type": MessageType.STATUS_UPDATE.value,
                "source_pool_id": self.source_pool_id,
                "target_pool_id": None,
                "payload": {EVENT_KEY: event_type, "data": payload},
            }
        )

    def subscribe(self, event_type: str, handler: Handler) -> None:
        if not self._handlers:
            self.bus.subscribe(MessageType.STATUS_UPDATE, self._dispatch)
        self._handlers[event_type].append(handler)

    async def drain(self) -> None:
        """Until every event published through this adapter has reached its handlers
        (``TelemetryCapture.shutdown()`` calls it, so nothing published is left behind)."""
        while self._delivered < self._published:
            await asyncio.sleep(0.001)

    async def _dispatch(self, message: Message) -> None:
        payload = message.payload
        event_type = payload.get(EVENT_KEY) if isinstance(payload, dict) else None
        if event_type is None:
            return  # somebody else's status update
        try:
            for handler in self._handlers.get(event_type, []):
                try:
                    await handler(payload["data"])
                except Exception:  # the real bus would lose it as an unretrieved exception
                    logger.exception("handler of %s failed", event_type)
        finally:
            self._delivered += 1
