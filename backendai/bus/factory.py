"""Pick the event bus named by ``[bus] kind``: in-process memory or Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..config import BusConfig
from ..errors import ConfigError
from .memory import MemoryEventBus
from .protocol import EventBus
from .redis import open_redis_bus

__all__ = ["open_event_bus", "use_event_bus"]


@asynccontextmanager
async def open_event_bus(config: BusConfig) -> AsyncIterator[EventBus]:
    """Open the bus of ``config.kind``; Redis is connected, checked and closed at exit.

    Raises :class:`~backendai.errors.UnavailableError` when Redis does not answer.
    """
    if config.kind == "memory":
        yield MemoryEventBus()
    elif config.kind == "redis":
        async with open_redis_bus(
            config,
            claim_idle=config.claim_timeout,
            max_deliveries=config.max_deliveries,
            connect_timeout=config.connect_timeout,
        ) as bus:
            yield bus
    else:
        raise ConfigError(f"bus.kind: invalid value {config.kind!r}; expected 'memory' or 'redis'")


@asynccontextmanager
async def use_event_bus(config: BusConfig, bus: EventBus | None) -> AsyncIterator[EventBus]:
    """*bus* when given (roles sharing one process use one bus), else one opened from *config*."""
    if bus is not None:
        yield bus
    else:
        async with open_event_bus(config) as opened:
            yield opened
