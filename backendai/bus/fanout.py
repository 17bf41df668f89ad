"""Handing broadcast events to local subscribers, shared by both bus implementations.

A subscriber gets a bounded buffer.  Delivery never blocks: a subscriber whose
buffer is full loses the event, with a warning (the database remains the truth).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .protocol import Event

__all__ = ["Fanout"]

log = logging.getLogger(__name__)


class Fanout:
    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()

    def deliver(self, event: Event) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                log.warning(
                    "broadcast subscriber is %d events behind; dropped %s", self._buffer, event.name
                )
            except trio.BrokenResourceError:
                self._subscribers.discard(send)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.abc.ReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](self._buffer)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
