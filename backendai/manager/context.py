"""What the manager's parts share, built once by the manager role and passed down."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from ..bus import Event, EventBus
from ..config import Config
from ..db import Database
from .agent_client import AgentClient
from .ratelimit import MemoryRateWindow, RateWindow
from .repo import StatusChange
from .states import event_name
from .storage_client import StorageClient

__all__ = ["ManagerContext", "Wakeup", "publish_changes"]

log = logging.getLogger(__name__)


class Wakeup:
    """A level-triggered hint: ``set()`` wakes the next (or current) ``wait``."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, period: float = math.inf) -> None:
        """Return when set, or after *period* seconds at the latest."""
        with trio.move_on_after(period):
            await self._event.wait()
        self._event = trio.Event()


@dataclass
class ManagerContext:
    config: Config
    db: Database
    bus: EventBus
    agents: AgentClient
    manager_id: str
    storage: StorageClient
    # Per-keypair request counts (Redis when the bus is Redis, else this process).
    rates: RateWindow = field(default_factory=MemoryRateWindow)
    # Password hashing (scrypt: 16 MiB and ~50 ms a call) runs at most this many at once.
    kdf_limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(2))
    schedule: Wakeup = field(default_factory=Wakeup)
    launch: Wakeup = field(default_factory=Wakeup)
    terminate: Wakeup = field(default_factory=Wakeup)
    # Set when a session leaves RUNNING: its app routes are to be removed.
    routes: Wakeup = field(default_factory=Wakeup)
    # session id -> event set when its status may have changed (POST /session waiters).
    waiters: dict[str, trio.Event] = field(default_factory=dict)

    def session_changed(self, session_id: str) -> None:
        ev = self.waiters.pop(session_id, None)
        if ev is not None:
            ev.set()


async def publish_changes(ctx: ManagerContext, changes: Iterable[StatusChange | None]) -> None:
    """Broadcast the session events for *changes*, wake local waiters and loops."""
    for ch in changes:
        if ch is None:
            continue
        ctx.session_changed(ch.session_id)
        if ch.new == "TERMINATING":
            ctx.terminate.set()
        if ch.old == "RUNNING":
            ctx.routes.set()
        if ch.new in {"TERMINATED", "CANCELLED", "ERROR"}:
            ctx.schedule.set()  # freed resources may let a pending session start
        log.info(
            "session %s (%s) %s -> %s%s",
            ch.session_name,
            ch.session_id,
            ch.old,
            ch.new,
            f" ({ch.reason})" if ch.reason else "",
        )
        data = {
            "sessionId": ch.session_id,
            "sessionName": ch.session_name,
            "ownerAccessKey": ch.access_key,
            "status": ch.new,
            "reason": ch.reason or "",
            "exitCode": ch.exit_code,
        }
        try:
            await ctx.bus.broadcast(Event(event_name("session", ch.new), ctx.manager_id, data))
            if ch.new == "TERMINATED" and ch.exit_code is not None:
                outcome = "session_success" if ch.exit_code == 0 else "session_failure"
                await ctx.bus.broadcast(Event(outcome, ctx.manager_id, data))
        except Exception:
            # Events are hints; the state is in the database already.
            log.warning(
                "could not broadcast %s for session %s", ch.new, ch.session_id, exc_info=True
            )
