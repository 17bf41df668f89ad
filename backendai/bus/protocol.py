"""The event bus seam: what roles tell each other, and how it travels.

Two delivery kinds:

* **anycast** (``anycast(to, event)``): exactly one consumer of the role kind
  ``to`` handles the event (agent heartbeats and kernel lifecycle reports go to
  one manager).  A consumer acknowledges by returning from its handler; an
  event whose consumer died is delivered again to another.
* **broadcast** (``broadcast(event)``): every current subscriber sees it
  (session events for server-sent-event streams on every manager).

Events are hints.  The database is the source of truth, and the coordinator
loops re-read it periodically, so a lost event delays a state change and
never loses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import trio

__all__ = ["Event", "EventBus", "EventHandler"]


@dataclass(frozen=True)
class Event:
    """A named fact from *source* with JSON-able *data*."""

    name: str
    source: str
    data: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        return json.dumps(
            {"name": self.name, "source": self.source, "data": dict(self.data), "at": self.at},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> Event:
        obj = json.loads(raw)
        return cls(name=obj["name"], source=obj["source"], data=obj["data"], at=obj["at"])


EventHandler = Callable[[Event], Awaitable[None]]


class EventBus(Protocol):
    async def anycast(self, to: str, event: Event) -> None:
        """Deliver *event* to exactly one consumer of role kind *to*."""

    async def broadcast(self, event: Event) -> None:
        """Deliver *event* to every current subscriber."""

    async def serve_anycast(
        self,
        kind: str,
        consumer: str,
        handler: EventHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Consume anycast events for *kind* as *consumer*; ack each when *handler* returns."""
        ...

    def subscribe(self) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[Event]]:
        """Receive broadcast events from now on, until the context exits."""
        ...
