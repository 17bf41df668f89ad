"""The app proxy's raw-socket core: read each request head, route it, splice its bytes.

Per request on a kept-alive connection: the head is parsed (only as far as
routing, framing and auth need), routed, and forwarded with its body; the
response head is read for its framing and the body passed on untouched.  A
websocket upgrade (or CONNECT) turns the connection into a raw splice both
ways, where a half-close in one direction is forwarded without cutting the
other.  Unknown routes get a clear 404 page; an app that does not answer gets
a 502 page (504 when connecting times out); slow or oversized heads get
408/431; an app over its connection limit gets 503.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import trio

from .framing import NO_BODY, Framing, request_framing, response_framing
from .head import HeadError, RequestHead, find_head_end, parse_head, parse_response_head
from .pages import page
from .wire import Side, splice

__all__ = [
    "ConnectionLimiter",
    "Gate",
    "ProxySettings",
    "Route",
    "RouteTable",
    "Router",
    "handle_connection",
    "handle_tcp",
]

log = logging.getLogger(__name__)
_MAX_RESPONSE_HEAD = 65536


@dataclass(frozen=True)
class Route:
    """Where an app listens, and who may reach it."""

    host: str
    port: int
    name: str = ""
    protocol: Literal["http", "tcp"] = "http"
    # The user (uuid) an ``authenticated`` app belongs to; public apps need no login.
    owner: str = ""
    public: bool = False
    # CIDR ranges a client must come from; empty: anywhere.
    allowed_client_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxySettings:
    max_header_bytes: int = 16384
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    connect_timeout: float = 5.0
    max_connections_per_route: int = 1000
    scheme: Literal["http", "https"] = "http"


class Router(Protocol):
    def route_for(self, head: RequestHead) -> Route | None: ...

    def unknown(self, head: RequestHead) -> str:
        """The 404 page's text for a request that has no route."""
        ...


# Decides whether a routed request may pass: None lets it through, bytes are the
# complete response to send instead (a refusal, or a redirect that sets a cookie).
Gate = Callable[[RequestHead, Route, str], bytes | None]


@dataclass
class RouteTable:
    """Host name -> where its app listens (wildcard mode; tests)."""

    by_host: dict[str, Route] = field(default_factory=dict)

    def lookup(self, host: str) -> Route | None:
        return self.by_host.get(host)

    def route_for(self, head: RequestHead) -> Route | None:
        return self.by_host.get(head.host)

    def unknown(self, head: RequestHead) -> str:
        return f"no app is served at host {head.host!r}"


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


class _Refused(Exception):
    """End the connection after answering the client with *page*."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer


def client_ip(stream: trio.abc.Stream) -> str:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        peer = stream.socket.getpeername()
        if isinstance(peer, tuple):
            return str(peer[0])
    return ""


class _Upstream:
    def __init__(self, route: Route, side: Side, *, used: bool = False) -> None:
        self.route = route
        self.side = side
        # Whether it carried a request before (a closed kept-alive connection is no error).
        self.used = used
        # Whether its last exchange ended cleanly, so that another request may follow.
        self.reusable = False


async def _upstream(
    route: Route, what: str, s: ProxySettings, limiter: ConnectionLimiter
) -> _Upstream:
    """An idle kept-alive connection to the app if there is one, else a new one."""
    idle = await limiter.take_idle(route)
    if idle is not None:
        return _Upstream(route, idle, used=True)
    return _Upstream(route, await _connect(route, what, s, limiter))


async def _connect(route: Route, what: str, s: ProxySettings, limiter: ConnectionLimiter) -> Side:
    if not limiter.claim(route):
        log.info("app %s is at its limit of %d connections; refusing", what, limiter.limit)
        raise _Refused(page(503, f"the app {what} has too many connections ({limiter.limit})"))
    try:
        with trio.fail_after(s.connect_timeout):
            stream = await trio.open_tcp_stream(route.host, route.port)
    except trio.TooSlowError:
        limiter.release(route)
        log.info("app at %s:%d for %s did not accept within %g s", route.host, route.port, what,
                 s.connect_timeout)  # fmt: skip
        raise _Refused(page(504, f"the app {what} did not answer in time")) from None
    except OSError as e:
        limiter.release(route)
        log.info("app at %s:%d for %s is not answering: %s", route.host, route.port, what, e)
        raise _Refused(page(502, f"the app {what} is not answering")) from None
    return Side(stream)


async def _close(up: _Upstream | None, limiter: ConnectionLimiter) -> None:
    """Done with *up*: back to the idle pool if it can carry another request, else closed."""
    if up is None:
        return
    if up.reusable and limiter.park(up.route, up.side):
        return
    limiter.release(up.route)
    with trio.move_on_after(1, shield=True):
        await up.side.stream.aclose()


async def _next_head(c: Side, s: ProxySettings, first: bool) -> bytes | None:
    """The next request head; None when the client ends (or idles out) between requests.

    The first head must be complete within ``header_timeout`` of the connection; a
    later one within ``header_timeout`` of its first byte, which may come after up to
    ``keepalive_timeout`` of idleness.
    """
    deadline = trio.current_time() + s.header_timeout
    if not c.buf:
        with trio.move_on_at(
            deadline if first else deadline - s.header_timeout + s.keepalive_timeout
        ):
            if not await c.fill():
                return None
        if not c.buf:
            if first:
                raise _Refused(_too_slow(s))
            return None  # idle past the keep-alive timeout
        if not first:
            deadline = trio.current_time() + s.header_timeout
    end = find_head_end(c.buf)
    if 0 <= end <= s.max_header_bytes:  # the whole head is here already (the common case)
        raw = bytes(c.buf[:end])
        del c.buf[:end]
        return raw
    try:
        with trio.fail_at(deadline):
            return await c.read_head(s.max_header_bytes)
    except trio.TooSlowError:
        raise _Refused(_too_slow(s)) from None


def _too_slow(s: ProxySettings) -> bytes:
    return page(408, f"the request head did not arrive within {s.header_timeout:g} s")


_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection"})


def _forwarded(raw: bytes, head: RequestHead, ip: str, scheme: str) -> bytes:
    """The head as the app gets it: X-Forwarded-* added; for a plain request, the client's
    hop-by-hop headers dropped, so that the app connection stays open for the next client."""
    extra = f"X-Forwarded-For: {ip}\r\nX-Forwarded-Proto: {scheme}\r\n\r\n".encode()
    if head.is_upgrade or not any(k.lower() in _HOP_BY_HOP for k, _ in head.headers):
        return raw[:-2] + extra
    lines = raw.split(b"\r\n")
    kept = [lines[0]] + [
        line
        for line in lines[1:-2]
        if line.split(b":", 1)[0].strip().lower().decode("latin-1") not in _HOP_BY_HOP
    ]
    return b"\r\n".join(kept) + b"\r\n" + extra


async def handle_connection(
    client: trio.abc.Stream,
    router: Router,
    settings: ProxySettings,
    *,
    limiter: ConnectionLimiter | None = None,
    gate: Gate | None = None,
) -> None:
    """Serve one client connection until it ends; never raises for what a client or app does."""
    limiter = (
        limiter if limiter is not None else ConnectionLimiter(settings.max_connections_per_route)
    )
    ip = client_ip(client)
    c = Side(client)
    up: _Upstream | None = None
    async with client:
        try:
            first = True
            while (raw := await _next_head(c, settings, first)) is not None:
                first = False
                head = parse_head(raw)
                framing = request_framing(head)
                route = router.route_for(head)
                if route is None:
                    raise _Refused(page(404, router.unknown(head)))
                if gate is not None and (answer := gate(head, route, ip)) is not None:
                    raise _Refused(answer)
                what = repr(route.name or head.host)
                if up is not None and up.route != route:
                    await _close(up, limiter)
                    up = None
                if up is None:
                    up = await _upstream(route, what, settings, limiter)
                out = _forwarded(raw, head, ip, settings.scheme)
                if head.is_upgrade:
                    await up.side.stream.send_all(out)
                    await splice(c, up.side)
                    return
                keep = await _exchange(c, up, head, framing, out, what)
                if keep is None:  # a kept-alive app connection had closed: once more, fresh
                    await _close(up, limiter)
                    up = _Upstream(route, await _connect(route, what, settings, limiter))
                    up.used = False
                    keep = await _exchange(c, up, head, framing, out, what)
                if not keep:
                    return
        except* _Refused as group:
            refused = group.exceptions[0]
            assert isinstance(refused, _Refused)
            await _answer(client, refused.answer)
        except* HeadError as group:
            e = group.exceptions[0]
            assert isinstance(e, HeadError)
            await _answer(client, page(e.status, str(e)))
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await _close(up, limiter)


async def _answer(client: trio.abc.Stream, answer: bytes) -> None:
    """Send a page of ours; a client that has gone meanwhile is not an error of ours."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await client.send_all(answer)


async def _exchange(
    c: Side, up: _Upstream, head: RequestHead, framing: Framing, out: bytes, what: str
) -> bool | None:
    """Forward one request and its response; whether the connection may carry another.

    None: the app connection (reused from a previous request) closed before
    answering a request without body, which the caller may send again.
    """
    reused, up.used = up.used, True
    up.reusable = False
    if framing.kind == "length" and len(c.buf) >= framing.length:
        # The whole request is here (the common case): one send, no task to stream a body.
        body = bytes(c.buf[: framing.length])
        del c.buf[: framing.length]
        await up.side.stream.send_all(out + body)
        return await _relay_response(c, up, head, what, reused and framing == NO_BODY, None)
    sent = False

    async def send_request() -> None:
        nonlocal sent
        sent = await c.forward(up.side.stream, framing, out, 400)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_request)
        keep = await _relay_response(c, up, head, what, False, nursery.cancel_scope)
        if not sent:
            nursery.cancel_scope.cancel()  # answered before the body was in: stop here
            up.reusable = False
            return False
    return keep


async def _relay_response(
    c: Side,
    up: _Upstream,
    head: RequestHead,
    what: str,
    may_retry: bool,
    sending: trio.CancelScope | None,
) -> bool | None:
    while True:
        raw = await up.side.read_head(_MAX_RESPONSE_HEAD)
        if raw is None:
            if sending is not None:
                sending.cancel()
            if may_retry:
                return None
            raise _Refused(page(502, f"the app {what} closed the connection without answering"))
        response = parse_response_head(raw)
        if response.status == 101:
            await c.stream.send_all(raw)
            await splice(c, up.side)
            return False
        if response.status >= 200:
            break
        await c.stream.send_all(raw)  # 100 Continue and friends
    rframing = response_framing(head.method, response)
    complete = await up.side.forward(c.stream, rframing, raw, 502)
    up.reusable = complete and rframing.kind != "close" and response.keep_alive and not up.side.buf
    return up.reusable and head.keep_alive


async def handle_tcp(
    client: trio.abc.Stream,
    route: Route,
    settings: ProxySettings,
    *,
    limiter: ConnectionLimiter,
) -> None:
    """Port mode for a TCP (non-HTTP) app: connect and splice, nothing parsed."""
    async with client:
        try:
            up = _Upstream(route, await _connect(route, repr(route.name), settings, limiter))
        except _Refused:
            return  # nothing to say in a protocol we do not speak
        try:
            await splice(Side(client), up.side)
        finally:
            await _close(up, limiter)
