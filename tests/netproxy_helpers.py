"""Loopback helpers for the app proxy tests: servers on port 0, h11 backends and clients."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import h11
import trio

from backendai.netproxy import (
    ConnectionLimiter,
    ProxySettings,
    Route,
    RouteTable,
    handle_connection,
)

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def serve(nursery: trio.Nursery, handler: Handler) -> int:
    """Serve *handler* on a loopback port 0; return the real port."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def start_proxy(
    nursery: trio.Nursery, routes: dict[str, int], **settings: object
) -> tuple[int, ConnectionLimiter]:
    table = RouteTable({host: Route("127.0.0.1", port, name=host) for host, port in routes.items()})
    s = ProxySettings(**settings)  # type: ignore[arg-type]
    limiter = ConnectionLimiter(s.max_connections_per_route)
    handler = partial(handle_connection, router=table, settings=s, limiter=limiter)
    return await serve(nursery, handler), limiter


async def read_until_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    with contextlib.suppress(trio.BrokenResourceError):
        while chunk := await stream.receive_some():
            data += chunk
    return bytes(data)


async def read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = await stream.receive_some(n - len(data))
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    return bytes(data)


async def exchange(port: int, data: bytes, *, eof: bool = False) -> bytes:
    """Send *data* to 127.0.0.1:*port* (then EOF if asked); return all that comes back."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        if eof:
            await stream.send_eof()
        return await read_until_eof(stream)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@dataclass
class Seen:
    """What an h11 backend received: one entry per request, and its connections."""

    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    connections: int = 0


async def h11_backend(name: str, seen: Seen, stream: trio.SocketStream) -> None:
    """A keep-alive HTTP/1.1 app (h11, not our parser): answers '<name> <method> <target> <body>'.

    A target containing 'chunked' is answered with a chunked body.
    """
    seen.connections += 1
    conn = h11.Connection(h11.SERVER)
    async with stream:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive_some())
                except trio.BrokenResourceError:
                    return
                continue
            if isinstance(event, h11.Request):
                request, body = event, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                headers = {k.decode(): v.decode() for k, v in request.headers}
                target = request.target.decode()
                seen.requests.append((request.method.decode(), target, headers, body))
                answer = f"{name} {request.method.decode()} {target} ".encode() + body
                if "chunked" in target:
                    out = conn.send(
                        h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")])
                    )
                    for i in range(0, len(answer), 3):
                        out += conn.send(h11.Data(data=answer[i : i + 3])) or b""
                else:
                    out = conn.send(
                        h11.Response(
                            status_code=200, headers=[("Content-Length", str(len(answer)))]
                        )
                    )
                    out += conn.send(h11.Data(data=answer)) or b""
                out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
                await stream.send_all(out)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            else:  # ConnectionClosed, PAUSED
                return


class H11Client:
    """Several requests, one after another, on one connection to the proxy."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, host: str, target: str, body: bytes = b"", *, chunked: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        headers = [("Host", host)]
        headers.append(
            ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body)))
        )
        out = self.conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            out += self.conn.send(h11.Data(data=body)) or b""
        out += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(out)
        status, got, data = 0, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some())
            elif isinstance(event, h11.Response):
                status = event.status_code
                got = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return status, got, data
            else:
                raise AssertionError(f"unexpected {event!r}")
