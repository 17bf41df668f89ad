"""The route table, fed from the proxy process to its worker processes over a unix socket.

One JSON object a line: first ``{"snapshot": [route, ...]}`` (the whole table
when the worker connects), then ``{"add": route}`` and ``{"remove": [id, ...]}``
as the table changes, in order.  In port mode each route carries the ``port``
it was placed on, where the worker listens too.  The snapshot is taken and the subscription
made in one step, so a worker misses nothing and sees nothing twice.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import trio

from .registry import AppRoute, RouteRegistry
from .route_api import app_route_from_json, app_route_to_json

__all__ = ["RouteFeed", "follow_feed"]

log = logging.getLogger(__name__)


class RouteFeed:
    def __init__(self, registry: RouteRegistry) -> None:
        self.registry = registry
        self._queues: set[trio.MemorySendChannel[dict[str, Any]]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def changed(self, added: AppRoute | None, removed: list[str]) -> None:
        """Pass a change of the table on to every worker (never blocks)."""
        if removed:
            self._publish({"remove": removed})
        if added is not None:
            self._publish({"add": self._route_json(added)})

    def _route_json(self, app: AppRoute) -> dict[str, Any]:
        d = app_route_to_json(app)
        placement = self.registry.placements.get(app.route_id)
        if self.registry.mode == "port" and placement is not None:
            d["port"] = placement.port
        return d

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._queues):
            try:
                queue.send_nowait(event)
            except trio.BrokenResourceError:
                self._queues.discard(queue)

    async def serve(
        self, path: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        await trio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        await trio.Path(path).unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX)
        await sock.bind(str(path))
        os.chmod(path, 0o600)  # only this user's processes may follow the table
        sock.listen(64)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._subscriber, [trio.SocketListener(sock)])
            task_status.started()
        raise AssertionError("the route feed listener returned")

    async def _subscriber(self, stream: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel[dict[str, Any]](math.inf)
        snapshot = [self._route_json(a) for a in self.registry.apps.values()]
        self._queues.add(send)
        try:
            async with stream, receive:
                await stream.send_all(json.dumps({"snapshot": snapshot}).encode() + b"\n")
                async for event in receive:
                    await stream.send_all(json.dumps(event).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("an app proxy worker left the route feed")
        finally:
            self._queues.discard(send)


def apply_event(
    registry: RouteRegistry, event: dict[str, Any], on_port: Callable[[int], None]
) -> None:
    """Apply one feed event to *registry*; *on_port* is told each port a route is placed on
    (port mode), so that the worker listens there too."""
    if "snapshot" in event:
        entries = event["snapshot"]
        registry.retain({app_route_from_json(d).route_id for d in entries})
        for d in entries:
            _place(registry, d, on_port)
    for rid in event.get("remove", []):
        registry.remove(rid)
    if "add" in event:
        _place(registry, event["add"], on_port)


def _place(registry: RouteRegistry, d: dict[str, Any], on_port: Callable[[int], None]) -> None:
    app = app_route_from_json(d)
    if registry.mode == "port":
        port = int(d["port"])
        registry.add_at(app, port)
        on_port(port)
    else:
        registry.add(app)


async def follow_feed(
    path: str, registry: RouteRegistry, on_port: Callable[[int], None] = lambda port: None
) -> None:
    """Keep *registry* equal to the feed's table; return when the feed ends."""
    stream = await trio.open_unix_socket(path)
    buf = b""
    async with stream:
        while data := await stream.receive_some():
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                apply_event(registry, json.loads(line), on_port)
