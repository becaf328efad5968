"""A faithful stand-in for Mahavishnu's message bus (``mahavishnu/mcp/protocols/
message_bus.py``), so that the examples run without the orchestrator installed.

What matters for telemetry is reproduced as the real bus behaves: ``MessageType`` is a
closed enum with lowercase values; ``publish`` takes a dict whose ``type`` must be one of
them, and an unknown type is only logged and relabelled STATUS_UPDATE (which is why the
first version's ``routing_decision`` events never reached a ``TASK_COMPLETED`` subscriber);
``subscribe`` takes a ``MessageType`` and an async handler that receives a ``Message``;
subscribers run fire-and-forget; a targeted message goes to that pool's bounded queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

logger = logging.getLogger("mahavishnu.message_bus")


class MessageType(Enum):
    TASK_DELEGATE = "task_delegate"
    RESULT_SHARE = "result_share"
    STATUS_UPDATE = "status_update"
    HEARTBEAT = "heartbeat"
    POOL_CREATED = "pool_created"
    POOL_CLOSED = "pool_closed"
    TASK_COMPLETED = "task_completed"


@dataclass
class Message:
    type: MessageType
    source_pool_id: str | None
    target_pool_id: str | None
    payload: dict[str, Any]
    timestamp: float = field(default_factory=time.time)


MessageHandler = Callable[[Message], Coroutine[Any, Any, None]]


class MessageBus:
    def __init__(self, max_queue_size: int = 1000, event_publisher: Any = None) -> None:
        self.max_queue_size = max_queue_size
        self.event_publisher = event_publisher
        self._queues: dict[str, asyncio.Queue[Message]] = {}
        self._subscribers: defaultdict[MessageType, list[MessageHandler]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()  # the real bus keeps none

    async def publish(self, message: dict[str, Any]) -> None:
        try:
            msg_type = MessageType(message.get("type"))
        except ValueError:
            logger.warning("Unknown message type %r, using STATUS_UPDATE", message.get("type"))
            msg_type = MessageType.STATUS_UPDATE
        msg = Message(
            type=msg_type,
            source_pool_id=message.get("source_pool_id"),
            target_pool_id=message.get("target_pool_id"),
            payload=message.get("payload", {}),
        )
        if msg.target_pool_id is not None:
            queue = self._queues.setdefault(
                msg.target_pool_id, asyncio.Queue(maxsize=self.max_queue_size)
            )
            try:
                queue.put_nowait(msg)
            except asyncio.QueueFull:
                logger.warning("Queue for pool %s is full, dropping message", msg.target_pool_id)
        for handler in self._subscribers.get(msg_type, []):
            task = asyncio.create_task(handler(msg))  # fire-and-forget, as the real bus
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def subscribe(self, msg_type: MessageType, handler: MessageHandler) -> None:
        self._subscribers[msg_type].append(handler)

    async def receive(self, pool_id: str, timeout: float | None = None) -> Message | None:
        queue = self._queues.setdefault(pool_id, asyncio.Queue(maxsize=self.max_queue_size))
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            return None

    def get_stats(self) -> dict[str, Any]:
        return {
            "pools_with_queues": len(self._queues),
            "queue_sizes": {pool: q.qsize() for pool, q in self._queues.items()},
            "subscriber_counts": {t.value: len(h) for t, h in self._subscribers.items()},
            "max_queue_size": self.max_queue_size,
        }
