"""One run's state on the agent: its runner connection and its bounded console buffer.

The pump (in :mod:`.execution`) adds what the runner sends; collectors
:meth:`Run.take` results.  ``blocked`` tells the pump to stop reading the
runner (a status waits to be collected, or the buffer holds ``CONSOLE_LIMIT``
bytes): that is the backpressure that reaches the user's process.
"""

from __future__ import annotations

from typing import Any

import trio

from .runner_client import RunnerConnection

__all__ = ["CONSOLE_LIMIT", "Run"]

CONSOLE_LIMIT = 1024 * 1024


def _size(item: list[Any]) -> int:
    data = item[1]
    if isinstance(data, list):
        return sum(len(str(d)) for d in data)
    return len(str(data))


class Run:
    def __init__(self, kernel_id: str, run_id: str, conn: RunnerConnection) -> None:
        self.kernel_id = kernel_id
        self.run_id = run_id
        self.conn = conn
        self.console: list[list[Any]] = []
        self.size = 0
        self.milestone: dict[str, Any] | None = None  # a status waiting to be collected
        self.final = False
        self.waiting_input = False
        self.error: Exception | None = None
        self.lock = trio.Lock()  # one collector at a time
        self.scope = trio.CancelScope()
        self.last_seen = trio.current_time()
        self._changed = trio.Event()
        self._room = trio.Event()

    def add(self, items: Any) -> None:
        for item in items if isinstance(items, list) else []:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                continue
            kind, data = item
            if kind in ("stdout", "stderr") and self.console and self.console[-1][0] == kind:
                self.console[-1][1] += str(data)
            else:
                self.console.append([kind, data])
            self.size += _size(item)

    @property
    def ready(self) -> bool:
        return self.milestone is not None or self.error is not None or self.size >= CONSOLE_LIMIT

    @property
    def blocked(self) -> bool:
        """The pump must not read the runner now."""
        return self.milestone is not None or self.size >= CONSOLE_LIMIT

    def notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    async def wait_room(self) -> None:
        await self._room.wait()

    def take(self) -> dict[str, Any]:
        """The next result: the console so far and the status waiting, if any."""
        console, self.console, self.size = self.console, [], 0
        milestone, self.milestone = self.milestone, None
        room, self._room = self._room, trio.Event()
        room.set()
        result: dict[str, Any] = {
            "run_id": self.run_id,
            "status": "continued",
            "exit_code": None,
            "console": console,
            "options": {},
            "files": [],
        }
        if milestone is not None:
            result.update(milestone)
        return result
