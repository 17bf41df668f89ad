"""Connections to apps: opened, counted against a per-app limit, and kept idle for reuse."""

from __future__ import annotations

import logging

import trio

from .pages import page
from .routes import ProxySettings, Route
from .tokens import forward_preamble
from .wire import Side

__all__ = [
    "ConnectionLimiter",
    "Refused",
    "Upstream",
    "close_upstream",
    "connect",
    "open_app_stream",
    "open_upstream",
]

log = logging.getLogger(__name__)


class ConnectionLimiter:
    """Counts open connections to each app, refusing one beyond *limit*, and keeps idle
    kept-alive ones for the next client (a few per app, for a few seconds: apps close idle
    connections on their own schedule, Node's after 5 s)."""

    IDLE_PER_APP = 32
    IDLE_SECONDS = 4.0

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[tuple[str, int], int] = {}
        self._idle: dict[tuple[str, int], list[tuple[float, Side]]] = {}

    def park(self, route: Route, side: Side) -> bool:
        """Keep *side* for reuse (it stays counted as open); False if there is no room."""
        idle = self._idle.setdefault((route.host, route.port), [])
        if len(idle) >= self.IDLE_PER_APP:
            return False
        idle.append((trio.current_time(), side))
        return True

    async def sweep_idle_forever(self) -> None:
        """Close idle connections that waited too long (their app may be gone for good)."""
        while True:
            await trio.sleep(self.IDLE_SECONDS)
            now = trio.current_time()
            for key, idle in list(self._idle.items()):
                stale = [side for t, side in idle if now - t >= self.IDLE_SECONDS]
                idle[:] = [(t, side) for t, side in idle if now - t < self.IDLE_SECONDS]
                for side in stale:
                    self.release(Route(*key))
                    with trio.move_on_after(1, shield=True):
                        await side.stream.aclose()

    async def take_idle(self, route: Route) -> Side | None:
        """The most recently parked connection to the app, unless it idled too long."""
        idle = self._idle.get((route.host, route.port))
        now = trio.current_time()
        while idle:
            parked_at, side = idle.pop()
            if now - parked_at < self.IDLE_SECONDS:
                return side
            self.release(route)
            with trio.move_on_after(1, shield=True):
                await side.stream.aclose()
        return None

    def claim(self, route: Route) -> bool:
        key = (route.host, route.port)
        if self._open.get(key, 0) >= self.limit:
            return False
        self._open[key] = self._open.get(key, 0) + 1
        return True

    def release(self, route: Route) -> None:
        key = (route.host, route.port)
        if (n := self._open.get(key, 0) - 1) > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)

    def open_to(self, route: Route) -> int:
        return self._open.get((route.host, route.port), 0)


class Refused(Exception):
    """End the connection after answering the client with *page*."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer


class Upstream:
    def __init__(self, route: Route, side: Side, *, used: bool = False) -> None:
        self.route = route
        self.side = side
        # Whether it carried a request before (a closed kept-alive connection is no error).
        self.used = used
        # Whether its last exchange ended cleanly, so that another request may follow.
        self.reusable = False


async def open_upstream(
    route: Route, what: str, s: ProxySettings, limiter: ConnectionLimiter
) -> Upstream:
    """An idle kept-alive connection to the app if there is one, else a new one."""
    idle = await limiter.take_idle(route)
    if idle is not None:
        return Upstream(route, idle, used=True)
    return Upstream(route, await connect(route, what, s, limiter))


async def open_app_stream(
    host: str, port: int, *, forward_key: str | None = None, route: str = ""
) -> trio.SocketStream:
    """A connection to an app; to an agent's forward (*forward_key* given), opened with the
    preamble of *route*, as the forward admits its own app's connections only."""
    stream = await trio.open_tcp_stream(host, port)
    if forward_key is not None:
        try:
            await stream.send_all(forward_preamble(forward_key, route))
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    return stream


async def connect(route: Route, what: str, s: ProxySettings, limiter: ConnectionLimiter) -> Side:
    if not limiter.claim(route):
        log.info("app %s is at its limit of %d connections; refusing", what, limiter.limit)
        raise Refused(page(503, f"the app {what} has too many connections ({limiter.limit})"))
    try:
        with trio.fail_after(s.connect_timeout):
            stream = await open_app_stream(
                route.host,
                route.port,
                forward_key=s.forward_key if route.forwarded else None,
                route=route.name,
            )
    except trio.TooSlowError:
        limiter.release(route)
        log.info("app at %s:%d for %s did not accept within %g s", route.host, route.port, what,
                 s.connect_timeout)  # fmt: skip
        raise Refused(page(504, f"the app {what} did not answer in time")) from None
    except (OSError, trio.BrokenResourceError) as e:
        limiter.release(route)
        log.info("app at %s:%d for %s is not answering: %s", route.host, route.port, what, e)
        raise Refused(page(502, f"the app {what} is not answering")) from None
    return Side(stream)


async def close_upstream(up: Upstream | None, limiter: ConnectionLimiter) -> None:
    """Done with *up*: back to the idle pool if it can carry another request, else closed."""
    if up is None:
        return
    if up.reusable and limiter.park(up.route, up.side):
        return
    limiter.release(up.route)
    with trio.move_on_after(1, shield=True):
        await up.side.stream.aclose()
