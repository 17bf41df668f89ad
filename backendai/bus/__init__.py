"""The event bus: protocol, in-process and Redis implementations."""

from __future__ import annotations

from .memory import MemoryEventBus
from .protocol import Event, EventBus, EventHandler

__all__ = ["Event", "EventBus", "EventHandler", "MemoryEventBus"]
