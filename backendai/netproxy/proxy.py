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
from .head import HeadError, RequestHead, parse_head, parse_response_head
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
    """Counts open connections to each app; refuses one beyond *limit*."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[tuple[str, int], int] = {}

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
    def __init__(self, route: Route, side: Side) -> None:
        self.route = route
        self.side = side
        self.used = False


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
    if up is not None:
        limiter.release(up.route)
        with trio.move_on_after(1, shield=True):
            await up.side.stream.aclose()


async def _next_head(c: Side, s: ProxySettings, first: bool) -> bytes | None:
    """The next request head; None when the client ends (or idles out) between requests."""
    if not first and not c.buf:
        with trio.move_on_after(s.keepalive_timeout):
            if not await c.fill():
                return None
        if not c.buf:
            return None  # idle past the keep-alive timeout
    try:
        with trio.fail_after(s.header_timeout):
            raw = await c.read_head(s.max_header_bytes)
    except trio.TooSlowError:
        raise _Refused(
            page(408, f"the request head did not arrive within {s.header_timeout:g} s")
        ) from None
    return raw


def _forwarded(raw: bytes, ip: str, scheme: str) -> bytes:
    return raw[:-2] + f"X-Forwarded-For: {ip}\r\nX-Forwarded-Proto: {scheme}\r\n\r\n".encode()


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
                    up = _Upstream(route, await _connect(route, what, settings, limiter))
                out = _forwarded(raw, ip, settings.scheme)
                if head.is_upgrade:
                    await up.side.stream.send_all(out)
                    await splice(c, up.side)
                    return
                keep = await _exchange(c, up, head, framing, out, what)
                if keep is None:  # a kept-alive app connection had closed: once more, fresh
                    await _close(up, limiter)
                    up = _Upstream(route, await _connect(route, what, settings, limiter))
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
    sent = False

    async def send_request() -> None:
        nonlocal sent
        sent = await c.forward(up.side.stream, framing, out, 400)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_request)
        while True:
            raw = await up.side.read_head(_MAX_RESPONSE_HEAD)
            if raw is None:
                nursery.cancel_scope.cancel()
                if reused and framing == NO_BODY:
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
        if not sent:
            nursery.cancel_scope.cancel()  # answered before the body was in: stop here
            return False
    return complete and rframing.kind != "close" and head.keep_alive and response.keep_alive


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
