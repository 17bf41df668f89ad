"""The event bus: protocol, in-process and Redis implementations."""

from __future__ import annotations

from .factory import open_event_bus
from .memory import MemoryEventBus
from .protocol import Event, EventBus, EventHandler
from .redis import RedisEventBus, open_redis_bus

__all__ = [
    "Event",
    "EventBus",
    "EventHandler",
    "MemoryEventBus",
    "RedisEventBus",
    "open_event_bus",
    "open_redis_bus",
]
