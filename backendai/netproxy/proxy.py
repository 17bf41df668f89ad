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
import math

import trio

from .framing import NO_BODY, Framing, request_framing, response_framing
from .head import HeadError, RequestHead, find_head_end, parse_head, parse_response_head
from .pages import page
from .routes import Gate, ProxySettings, Route, Router
from .upstreams import (
    ConnectionLimiter,
    Refused,
    Upstream,
    close_upstream,
    connect,
    open_upstream,
)
from .wire import Side, splice

__all__ = ["client_ip", "handle_connection", "handle_tcp"]

log = logging.getLogger(__name__)
_MAX_RESPONSE_HEAD = 65536


def client_ip(stream: trio.abc.Stream) -> str:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        peer = stream.socket.getpeername()
        if isinstance(peer, tuple):
            return str(peer[0])
    return ""


async def _next_head(
    c: Side, s: ProxySettings, first: bool, waiting: trio.CancelScope
) -> bytes | None:
    """The next request head; None when the client ends between requests.

    The first head must be complete within ``header_timeout`` of the connection; a
    later one within ``header_timeout`` of its first byte, which may come after up to
    ``keepalive_timeout`` of idleness.  Waiting for the first byte is bounded by
    *waiting*, the connection's scope (cheaper than a scope per request): its
    deadline is set for the wait only, and when it passes the connection ends.
    """
    deadline = trio.current_time() + s.header_timeout
    # A new connection's first request has usually come with it; a later one, not yet.
    if not c.buf and not (first and c.fill_now()):
        waiting.deadline = deadline if first else deadline - s.header_timeout + s.keepalive_timeout
        more = await c.fill(wait=True)
        waiting.deadline = math.inf
        if not more:
            return None
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
        raise Refused(_too_slow(s)) from None


def _too_slow(s: ProxySettings) -> bytes:
    return page(408, f"the request head did not arrive within {s.header_timeout:g} s")


_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection"})


def _forwarded_headers(ip: str, scheme: str) -> bytes:
    """What ends every head forwarded for this client (made once per connection)."""
    return f"X-Forwarded-For: {ip}\r\nX-Forwarded-Proto: {scheme}\r\n\r\n".encode()


def _forwarded(raw: bytes, head: RequestHead, extra: bytes) -> bytes:
    """The head as the app gets it: X-Forwarded-* (*extra*) added; for a plain request, the
    client's hop-by-hop headers dropped, so that the app connection stays open for the next
    client."""
    if head.is_upgrade or _HOP_BY_HOP.isdisjoint(head.names):
        return raw[:-2] + extra
    return _without_hop_by_hop(raw, extra)


def _without_hop_by_hop(raw: bytes, extra: bytes) -> bytes:
    """The head *raw* without its hop-by-hop header lines, ended by *extra*."""
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
    extra = _forwarded_headers(ip, settings.scheme)
    c = Side(client)
    up: Upstream | None = None
    async with c:
        try:
            first = True
            with trio.CancelScope() as waiting:
                while (raw := await _next_head(c, settings, first, waiting)) is not None:
                    first = False
                    head = parse_head(raw)
                    framing = request_framing(head)
                    route = router.route_for(head)
                    if route is None:
                        raise Refused(page(404, router.unknown(head)))
                    if gate is not None and (answer := gate(head, route, ip)) is not None:
                        raise Refused(answer)
                    what = repr(route.name or head.host)
                    if up is not None and up.route is not route and up.route != route:
                        await close_upstream(up, limiter)
                        up = None
                    if up is None:
                        up = await open_upstream(route, what, settings, limiter)
                    out = _forwarded(raw, head, extra)
                    if head.is_upgrade:
                        await up.side.send_all(out)
                        await splice(c, up.side)
                        return
                    keep = await _exchange(c, up, head, framing, out, what)
                    if keep is None:  # a kept-alive app connection had closed: once more, fresh
                        await close_upstream(up, limiter)
                        up = Upstream(route, await connect(route, what, settings, limiter))
                        up.used = False
                        keep = await _exchange(c, up, head, framing, out, what)
                    if not keep:
                        return
            if waiting.cancelled_caught and first:  # no first request in time
                raise Refused(_too_slow(settings))
        except* Refused as group:
            refused = group.exceptions[0]
            assert isinstance(refused, Refused)
            await _answer(client, refused.answer)
        except* HeadError as group:
            e = group.exceptions[0]
            assert isinstance(e, HeadError)
            await _answer(client, page(e.status, str(e)))
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await close_upstream(up, limiter)


async def _answer(client: trio.abc.Stream, answer: bytes) -> None:
    """Send a page of ours; a client that has gone meanwhile is not an error of ours."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await client.send_all(answer)


async def _exchange(
    c: Side, up: Upstream, head: RequestHead, framing: Framing, out: bytes, what: str
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
        await up.side.send_all(out + body)
        return await _relay_response(c, up, head, what, reused and framing == NO_BODY, None)
    sent = False

    async def send_request() -> None:
        nonlocal sent
        sent = await c.forward(up.side, framing, out, 400)

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
    up: Upstream,
    head: RequestHead,
    what: str,
    may_retry: bool,
    sending: trio.CancelScope | None,
) -> bool | None:
    while True:
        raw = await up.side.read_head(_MAX_RESPONSE_HEAD, wait=not up.side.buf)
        if raw is None:
            if sending is not None:
                sending.cancel()
            if may_retry:
                return None
            raise Refused(page(502, f"the app {what} closed the connection without answering"))
        response = parse_response_head(raw)
        if response.status == 101:
            await c.send_all(raw)
            await splice(c, up.side)
            return False
        if response.status >= 200:
            break
        await c.send_all(raw)  # 100 Continue and friends
    rframing = response_framing(head.method, response)
    if not head.keep_alive and response.keep_alive:
        # The client's connection ends after this response: say so, whatever the app said
        # about its own (else the client sends its next request into a closing connection).
        raw = _without_hop_by_hop(raw, b"Connection: close\r\n\r\n")
    complete = await up.side.forward(c, rframing, raw, 502)
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
            up = Upstream(route, await connect(route, repr(route.name), settings, limiter))
        except Refused:
            return  # nothing to say in a protocol we do not speak
        try:
            await splice(Side(client), up.side)
        finally:
            await close_upstream(up, limiter)
