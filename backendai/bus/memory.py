"""The in-process event bus, for role ``all`` and for tests.

Anycast events queue per role kind and go to one consumer at a time; a
handler that raises leaves the event for the next delivery (at-least-once, as
with Redis).  Broadcast never blocks the publisher: a subscriber whose buffer
is full loses the event, with a warning (the database remains the truth).
"""

from __future__ import annotations

import logging
import math
from contextlib import AbstractAsyncContextManager
from typing import NoReturn

import trio

from .fanout import Fanout
from .protocol import Event, EventHandler

__all__ = ["MemoryEventBus"]

log = logging.getLogger(__name__)


class MemoryEventBus:
    def __init__(self, *, subscriber_buffer: int = 1024) -> None:
        self._queues: dict[
            str, tuple[trio.MemorySendChannel[Event], trio.MemoryReceiveChannel[Event]]
        ] = {}
        self._fanout = Fanout(subscriber_buffer)

    def _queue(
        self, kind: str
    ) -> tuple[trio.MemorySendChannel[Event], trio.MemoryReceiveChannel[Event]]:
        if kind not in self._queues:
            self._queues[kind] = trio.open_memory_channel[Event](math.inf)
        return self._queues[kind]

    async def anycast(self, to: str, event: Event) -> None:
        self._queue(to)[0].send_nowait(event)
        await trio.lowlevel.checkpoint()

    async def broadcast(self, event: Event) -> None:
        self._fanout.deliver(event)
        await trio.lowlevel.checkpoint()

    async def serve_anycast(
        self,
        kind: str,
        consumer: str,
        handler: EventHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        send, receive = self._queue(kind)
        task_status.started()
        while True:
            event = await receive.receive()
            try:
                await handler(event)
            except Exception:
                log.exception(
                    "consumer %s failed on %s; it will be delivered again", consumer, event.name
                )
                send.send_nowait(event)
                await trio.sleep(0.1)

    def subscribe(self) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[Event]]:
        return self._fanout.subscribe()
