"""The proxy's listeners: the main one (wildcard routing) and one per app port (port mode)."""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

import trio

from ..errors import UnavailableError
from .gate import client_allowed
from .listen import bound_port, open_listeners, serve_listeners
from .proxy import client_ip, handle_connection, handle_tcp
from .registry import AppRoute, Placement, PortRouter, RouteRegistry
from .routes import Gate, ProxySettings
from .upstreams import ConnectionLimiter

__all__ = ["ProxyServer"]

log = logging.getLogger(__name__)


@dataclass
class _OpenRequest:
    port: int
    done: trio.Event = field(default_factory=trio.Event)
    error: UnavailableError | None = None


class ProxyServer:
    """What the route API changes: the registry, and (port mode) the listeners behind it."""

    def __init__(
        self,
        registry: RouteRegistry,
        settings: ProxySettings,
        *,
        host: str,
        tls: ssl.SSLContext | None = None,
        gate: Gate | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.host = host
        self.tls = tls
        self.gate = gate
        # Other processes (workers) listen on the main port too.
        self.reuse_port = reuse_port
        # Called after every change of the table with what was added and removed (the route
        # feed to worker processes).
        self.on_change: Callable[[AppRoute | None, list[str]], None] = lambda added, removed: None
        self.limiter = ConnectionLimiter(settings.max_connections_per_route)
        self._open_send, self._open_receive = trio.open_memory_channel[_OpenRequest](math.inf)
        self._listening: set[int] = set()
        # route id -> when the API last added or removed it (see replace_all)
        self._changed: dict[str, float] = {}

    async def handle_main(self, stream: trio.abc.Stream) -> None:
        await handle_connection(
            stream, self.registry, self.settings, limiter=self.limiter, gate=self.gate
        )

    async def handle_port(self, port: int, stream: trio.abc.Stream) -> None:
        route = self.registry.at_port(port)
        if route is not None and route.protocol == "tcp":
            # Raw TCP carries no cookie: only the client address ranges can keep others out.
            if not client_allowed(client_ip(stream), route.allowed_client_ips):
                await stream.aclose()
                return
            await handle_tcp(stream, route, self.settings, limiter=self.limiter)
            return
        router = PortRouter(self.registry, port)
        await handle_connection(stream, router, self.settings, limiter=self.limiter, gate=self.gate)

    async def add(self, app: AppRoute) -> Placement:
        """Register *app*; in port mode, listen on its port first (another if that one is taken)."""
        self._changed[app.route_id] = trio.current_time()
        while True:
            placement = self.registry.add(app)
            if self.registry.mode != "port" or placement.port in self._listening:
                self.on_change(app, [])
                return placement
            request = _OpenRequest(placement.port)
            self._open_send.send_nowait(request)
            await request.done.wait()
            if request.error is None:
                self.on_change(app, [])
                return placement
            log.warning("%s; giving %s another port", request.error, app.route_id)
            self.registry.refuse_port(placement.port)

    async def replace_all(
        self, apps: list[AppRoute], *, since: float = math.inf
    ) -> list[Placement]:
        """Make the table exactly *apps*: a manager's view, as it was at time *since*.

        Routes added or removed through the API after *since* are newer than that
        view and stay as they are.
        """
        newer = {rid for rid, t in self._changed.items() if t > since}
        dropped = self.registry.retain({a.route_id for a in apps} | newer)
        self.on_change(None, dropped)
        return [await self.add(a) for a in apps if a.route_id not in newer]

    def remove(self, route_id: str) -> Placement | None:
        self._changed[route_id] = trio.current_time()
        removed = self.registry.remove(route_id)
        self.on_change(None, [route_id])
        return removed

    def remove_session(self, session_id: str) -> list[Placement]:
        removed = self.registry.remove_session(session_id)
        now = trio.current_time()
        self._changed.update((p.route_id, now) for p in removed)
        self.on_change(None, [p.route_id for p in removed])
        return removed

    def listen_on(self, port: int) -> None:
        """Listen on *port* too, soon (a worker following a port-mode table)."""
        if port not in self._listening:
            self._open_send.send_nowait(_OpenRequest(port))

    async def serve(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Serve the main listener and the port listeners; ``started()`` carries the main port."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.limiter.sweep_idle_forever)
            await nursery.start(self._serve_ports)
            for port in self.registry.allocated_ports():  # kept from before a restart
                self._open_send.send_nowait(_OpenRequest(port))
            listeners = await open_listeners(
                self.host, self.registry.port, self.tls, reuse_port=self.reuse_port
            )
            await nursery.start(serve_listeners, self.handle_main, listeners)
            port = bound_port(listeners[0])
            self.registry.port = port
            task_status.started(port)
        raise AssertionError("the app proxy listeners returned")

    async def _serve_ports(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Open port listeners on request (never closed: a freed port answers 404 until reused)."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for request in self._open_receive:
                if request.port not in self._listening:
                    try:
                        listeners = await open_listeners(
                            self.host, request.port, self.tls, reuse_port=self.reuse_port
                        )
                    except UnavailableError as e:
                        request.error = e
                    else:
                        self._listening.add(request.port)
                        handler = partial(self.handle_port, request.port)
                        nursery.start_soon(serve_listeners, handler, listeners)
                request.done.set()
        raise AssertionError("the port listener channel closed")
