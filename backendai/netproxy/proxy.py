"""The app proxy's raw-socket core: read a request head, route by Host, splice bytes.

After routing, bytes flow both ways untouched (keep-alive and websocket
upgrades pass through), and a half-close in one direction is forwarded
without cutting the other.  Unknown routes get a clear 404 page; an app that
does not answer gets a 502 page; slow or oversized heads get 408/431.
"""

from __future__ import annotations

import contextlib
import html
import logging
from dataclasses import dataclass, field

import trio

from .head import HeadError, find_head_end, parse_head

__all__ = ["Route", "RouteTable", "handle_connection", "splice"]

log = logging.getLogger(__name__)
_CHUNK = 65536


@dataclass(frozen=True)
class Route:
    host: str
    port: int


@dataclass
class RouteTable:
    """Host name -> where its app listens."""

    by_host: dict[str, Route] = field(default_factory=dict)

    def lookup(self, host: str) -> Route | None:
        return self.by_host.get(host)


def _page(status: int, reason: str, text: str) -> bytes:
    body = f"<!doctype html><title>{status} {reason}</title><h1>{status} {reason}</h1><p>{html.escape(text, quote=False)}</p>\n".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def _answer(client: trio.SocketStream, page: bytes) -> None:
    """Send an error page; a client that has gone meanwhile is not an error of ours."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await client.send_all(page)


async def _pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    while True:
        data = await src.receive_some(_CHUNK)
        if not data:
            with contextlib.suppress(trio.BrokenResourceError):
                await dst.send_eof()
            return
        await dst.send_all(data)


async def splice(a: trio.SocketStream, b: trio.SocketStream) -> None:
    """Copy bytes both ways until both directions have ended."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, a, b)
            nursery.start_soon(_pump, b, a)
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def handle_connection(
    client: trio.SocketStream,
    table: RouteTable,
    *,
    max_header_bytes: int,
    header_timeout: float,
    connect_timeout: float = 5.0,
) -> None:
    async with client:
        buf = bytearray()
        too_large = _page(
            431,
            "Request Header Fields Too Large",
            f"the request head exceeds {max_header_bytes} bytes",
        )
        try:
            with trio.fail_after(header_timeout):
                while (end := find_head_end(buf)) < 0:
                    if len(buf) > max_header_bytes:
                        await _answer(client, too_large)
                        return
                    data = await client.receive_some(_CHUNK)
                    if not data:
                        return
                    buf += data
            if end > max_header_bytes:  # the whole head came within one read
                await _answer(client, too_large)
                return
            head = parse_head(bytes(buf[:end]))
        except trio.TooSlowError:
            await _answer(
                client,
                _page(
                    408,
                    "Request Timeout",
                    f"the request head did not arrive within {header_timeout:g} s",
                ),
            )
            return
        except HeadError as e:
            await _answer(client, _page(e.status, "Bad Request", str(e)))
            return
        except trio.BrokenResourceError:
            return
        route = table.lookup(head.host)
        if route is None:
            await _answer(
                client, _page(404, "Not Found", f"no app is served at host {head.host!r}")
            )
            return
        try:
            with trio.fail_after(connect_timeout):
                upstream = await trio.open_tcp_stream(route.host, route.port)
        except trio.TooSlowError:
            log.info(
                "app at %s:%d for %s did not accept within %g s",
                route.host,
                route.port,
                head.host,
                connect_timeout,
            )
            await _answer(
                client,
                _page(504, "Gateway Timeout", f"the app for {head.host!r} did not answer in time"),
            )
            return
        except OSError as e:
            log.info(
                "app at %s:%d for %s is not answering: %s", route.host, route.port, head.host, e
            )
            await _answer(
                client, _page(502, "Bad Gateway", f"the app for {head.host!r} is not answering")
            )
            return
        async with upstream:
            try:
                await upstream.send_all(bytes(buf))
            except trio.BrokenResourceError:
                log.info("app at %s:%d for %s closed at once", route.host, route.port, head.host)
                return
            await splice(client, upstream)
