"""The app proxy (backendai.netproxy): request-head parsing, and the proxy itself on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.testing

from backendai.netproxy import (
    HeadError,
    RequestHead,
    Route,
    RouteTable,
    find_head_end,
    handle_connection,
    parse_head,
)

# -- head parsing (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "method", "target", "version", "headers"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n",
            "GET",
            "/",
            "HTTP/1.1",
            (("Host", "app.example"),),
        ),
        (
            b"POST /upload?x=1 HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            "POST",
            "/upload?x=1",
            "HTTP/1.0",
            (("Host", "a"), ("Content-Length", "5")),
        ),
        # Values are trimmed; a colon in the value stays in the value; empty values are kept.
        (
            b"GET /ws HTTP/1.1\r\nHost:   a:80  \r\nUpgrade:websocket\r\nX-Empty:\r\n\r\n",
            "GET",
            "/ws",
            "HTTP/1.1",
            (("Host", "a:80"), ("Upgrade", "websocket"), ("X-Empty", "")),
        ),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", "OPTIONS", "*", "HTTP/1.1", ()),
        (
            b"CONNECT app.example:443 HTTP/1.1\r\n\r\n",
            "CONNECT",
            "app.example:443",
            "HTTP/1.1",
            (),
        ),
        # Without the final blank line (as find_head_end's slice may be passed on).
        (b"GET / HTTP/1.1\r\nA: b", "GET", "/", "HTTP/1.1", (("A", "b"),)),
        # Bytes beyond ASCII survive as latin-1.
        (b"GET /\xe9 HTTP/1.1\r\nX: \xff\r\n\r\n", "GET", "/\xe9", "HTTP/1.1", (("X", "\xff"),)),
    ],
)
def test_parse_good_heads(
    raw: bytes, method: str, target: str, version: str, headers: tuple[tuple[str, str], ...]
) -> None:
    assert parse_head(raw) == RequestHead(method, target, version, headers)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"GET /\r\n\r\n", "malformed request line 'GET /'"),
        (b"GET  / HTTP/1.1\r\n\r\n", "malformed request line 'GET  / HTTP/1.1'"),
        (b"GET / HTTP/1.1 extra\r\n\r\n", "malformed request line"),
        (b"G3T / HTTP/1.1\r\n\r\n", "malformed request line 'G3T / HTTP/1.1'"),
        (b"GET / HTTP/2.0\r\n\r\n", "malformed request line 'GET / HTTP/2.0'"),
        (b"GET / FTP/1.0\r\n\r\n", "malformed request line"),
        (b"\r\n\r\n", "malformed request line ''"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "malformed request line"),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "malformed header line 'NoColon'"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "malformed header line 'Host : a'"),
        (b"GET / HTTP/1.1\r\n Folded: a\r\n\r\n", "malformed header line ' Folded: a'"),
        (b"GET / HTTP/1.1\r\n: novalue\r\n\r\n", "malformed header line ': novalue'"),
        (b"GET / HTTP/1.1\r\nA: b\r\n\tcontinued\r\n\r\n", "malformed header line '\\tcontinued'"),
    ],
)
def test_parse_malformed_heads(raw: bytes, message: str) -> None:
    with pytest.raises(HeadError) as info:
        parse_head(raw)
    assert info.value.status == 400
    assert message in str(info.value)


def test_malformed_line_is_cut_in_the_message() -> None:
    with pytest.raises(HeadError) as info:
        parse_head(b"X" * 10_000 + b"\r\n\r\n")
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("host_header", "host"),
    [
        ("app.example", "app.example"),
        ("App.Example", "app.example"),
        ("app.example:8080", "app.example"),
        ("app.example:", "app.example"),
        ("127.0.0.1:10200", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("[2001:DB8::1]:443", "[2001:db8::1]"),
        ("  spaced.example  ", "spaced.example"),
        ("", ""),
        (None, ""),
    ],
)
def test_host_without_port(host_header: str | None, host: str) -> None:
    raw = b"GET / HTTP/1.1\r\n"
    if host_header is not None:
        raw += f"Host: {host_header}\r\n".encode()
    assert parse_head(raw + b"\r\n").host == host


def test_header_lookup_is_case_insensitive_and_first_wins() -> None:
    head = parse_head(b"GET / HTTP/1.1\r\nx-a: 1\r\nX-A: 2\r\n\r\n")
    assert head.header("X-A") == "1"
    assert head.header("x-a") == "1"
    assert head.header("missing") is None


@pytest.mark.parametrize(
    ("buf", "end"),
    [
        (b"", -1),
        (b"GET / HTTP/1.1\r\n", -1),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r", -1),
        (b"GET / HTTP/1.1\r\n\r\n", 18),
        (b"GET / HTTP/1.1\r\n\r\nbody\r\n\r\n", 18),
        (bytearray(b"GET / HTTP/1.1\r\nA: b\r\n\r\nxyz"), 24),
        # Bare LF is not a head end: we wait for CRLF CRLF.
        (b"GET / HTTP/1.1\n\n", -1),
    ],
)
def test_find_head_end(buf: bytes | bytearray, end: int) -> None:
    assert find_head_end(buf) == end


# -- the proxy on loopback ----------------------------------------------------------------

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def serve(nursery: trio.Nursery, handler: Handler) -> int:
    """Serve *handler* on a loopback port 0; return the real port."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def start_proxy(
    nursery: trio.Nursery,
    routes: dict[str, int],
    *,
    max_header_bytes: int = 16384,
    header_timeout: float = 10.0,
) -> int:
    table = RouteTable({host: Route("127.0.0.1", port) for host, port in routes.items()})
    handler = partial(
        handle_connection,
        table=table,
        max_header_bytes=max_header_bytes,
        header_timeout=header_timeout,
    )
    return await serve(nursery, handler)


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


async def http_backend(seen: list[bytes], stream: trio.SocketStream) -> None:
    """A tiny HTTP/1.1 app: answers with the request body upper-cased, and closes."""
    async with stream:
        buf = bytearray()
        while (end := find_head_end(buf)) < 0:
            buf += await stream.receive_some()
        head = parse_head(bytes(buf[:end]))
        length = int(head.header("content-length") or 0)
        body = bytes(buf[end:]) + await read_exactly(stream, length - (len(buf) - end))
        seen.append(bytes(buf[:end]) + body)
        answer = body.upper()
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(answer), answer)
        )


async def echo_backend(seen: list[bytes], stream: trio.SocketStream) -> None:
    """Echo every byte; after the client's EOF, say how many bytes came, then close."""
    async with stream:
        total = 0
        while data := await stream.receive_some():
            total += len(data)
            await stream.send_all(data)
        seen.append(b"EOF")
        await stream.send_all(b"[backend saw EOF after %d bytes]" % total)


def head_for(host: str, extra: str = "") -> bytes:
    return f"POST /echo HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


async def test_unknown_host_gets_a_404_page_naming_it(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, {})
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: Nope.Example:8080\r\n\r\n")
    assert status_of(response) == 404
    assert b"Content-Type: text/html" in response
    assert b"no app is served at host 'nope.example'" in response
    head, _, body = response.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(body)}".encode() in head


async def test_error_pages_escape_what_the_client_sent(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, {})
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: <b>x</b>\r\n\r\n")
    assert status_of(response) == 404
    assert b"<b>x</b>" not in response
    assert b"&lt;b&gt;x&lt;/b&gt;" in response


async def test_a_malformed_head_gets_a_400_page(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, {})
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nNoColon\r\n\r\n")
    assert status_of(response) == 400
    assert b"malformed header line 'NoColon'" in response


async def test_a_route_to_a_closed_port_gets_a_502_page(nursery: trio.Nursery) -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()
    proxy = await start_proxy(nursery, {"down.test": closed_port})
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: down.test\r\n\r\n")
    assert status_of(response) == 502
    assert b"the app for 'down.test' is not answering" in response


@pytest.mark.parametrize(
    "split",
    [
        pytest.param(lambda head, body: [head, body], id="body-after-head"),
        pytest.param(lambda head, body: [head + body], id="head-and-body-together"),
        pytest.param(
            lambda head, body: [head[:10], head[10:], body[:5], body[5:]], id="split-everywhere"
        ),
    ],
)
async def test_http_request_and_body_reach_the_app(
    nursery: trio.Nursery, split: Callable[[bytes, bytes], list[bytes]]
) -> None:
    seen: list[bytes] = []
    app = await serve(nursery, partial(http_backend, seen))
    proxy = await start_proxy(nursery, {"app.test": app})
    head = head_for("app.test:10200", "Content-Length: 11\r\n")
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream:
            for piece in split(head, b"hello world"):
                await stream.send_all(piece)
                await trio.testing.wait_all_tasks_blocked()
            response = await read_until_eof(stream)
    assert seen == [head + b"hello world"]
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\nHELLO WORLD")


async def test_half_close_is_forwarded_and_the_app_can_still_answer(
    nursery: trio.Nursery,
) -> None:
    seen: list[bytes] = []
    app = await serve(nursery, partial(echo_backend, seen))
    proxy = await start_proxy(nursery, {"echo.test": app})
    head = head_for("echo.test")
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream:
            await stream.send_all(head + b"ping")
            # The connection is live both ways before any EOF.
            assert await read_exactly(stream, len(head) + 4) == head + b"ping"
            assert seen == []
            await stream.send_eof()
            rest = await read_until_eof(stream)
    assert seen == [b"EOF"]
    assert rest == b"[backend saw EOF after %d bytes]" % (len(head) + 4)


async def test_large_transfer_is_spliced_both_ways(nursery: trio.Nursery) -> None:
    seen: list[bytes] = []
    app = await serve(nursery, partial(echo_backend, seen))
    proxy = await start_proxy(nursery, {"echo.test": app})
    payload = head_for("echo.test") + bytes(range(256)) * 8192  # 2 MiB after the head
    received = b""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream, trio.open_nursery() as inner:

            async def send() -> None:
                for i in range(0, len(payload), 100_000):
                    await stream.send_all(payload[i : i + 100_000])
                await stream.send_eof()

            inner.start_soon(send)
            received = await read_until_eof(stream)
    assert received == payload + b"[backend saw EOF after %d bytes]" % len(payload)


async def test_the_app_closing_first_is_forwarded(nursery: trio.Nursery) -> None:
    async def greet_and_close(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"bye")

    app = await serve(nursery, greet_and_close)
    proxy = await start_proxy(nursery, {"bye.test": app})
    with trio.fail_after(5):
        response = await exchange(proxy, head_for("bye.test"))
    assert response == b"bye"


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(1, id="in-one-piece"),
        pytest.param(3, id="in-three-pieces"),
    ],
)
async def test_a_head_larger_than_the_limit_gets_431(nursery: trio.Nursery, pieces: int) -> None:
    proxy = await start_proxy(nursery, {"app.test": 1}, max_header_bytes=1024)
    head = head_for("app.test", f"X-Big: {'x' * 2000}\r\n")
    size = len(head) // pieces + 1
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream:
            for i in range(0, len(head), size):
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(head[i : i + size])
                await trio.testing.wait_all_tasks_blocked()
            response = await read_until_eof(stream)
    assert status_of(response) == 431
    assert b"the request head exceeds 1024 bytes" in response


async def test_a_head_at_the_limit_is_accepted(nursery: trio.Nursery) -> None:
    head = head_for("nope.test")
    proxy = await start_proxy(nursery, {}, max_header_bytes=len(head))
    with trio.fail_after(5):
        response = await exchange(proxy, head)
    assert status_of(response) == 404


async def test_a_slow_head_gets_408(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    proxy = await start_proxy(nursery, {}, header_timeout=10.0)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy)
    async with stream:
        start = trio.current_time()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: slow")
        response = await read_until_eof(stream)
        elapsed = trio.current_time() - start
    assert status_of(response) == 408
    assert b"the request head did not arrive within 10 s" in response
    assert 10.0 <= elapsed < 10.5


async def test_a_trickling_head_gets_408_too(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The timeout bounds the whole head, not each read: one byte a second does not keep it open."""
    proxy = await start_proxy(nursery, {}, header_timeout=10.0)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy)
    head = head_for("slow.test")

    async def trickle() -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            for byte in head:
                await stream.send_all(bytes([byte]))
                await trio.sleep(1)

    async with stream, trio.open_nursery() as inner:
        start = trio.current_time()
        inner.start_soon(trickle)
        response = await read_until_eof(stream)
        elapsed = trio.current_time() - start
        inner.cancel_scope.cancel()
    assert status_of(response) == 408
    assert 10.0 <= elapsed < 11.0


async def test_a_client_leaving_early_does_not_stop_the_proxy(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, {})
    with trio.fail_after(5):
        assert await exchange(proxy, b"", eof=True) == b""
        assert await exchange(proxy, b"GET / HTTP/1.1\r\n", eof=True) == b""
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: after\r\n\r\n")
    assert status_of(response) == 404


class GoneClient(trio.abc.HalfCloseableStream):
    """A client that sent *data* and then vanished: every send fails as on a reset."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        data, self._data = self._data, b""
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError("connection reset by peer")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError("connection reset by peer")

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: nope\r\n\r\n", id="404"),
        pytest.param(b"GET / HTTP/1.1\r\nbad\r\n\r\n", id="400"),
        pytest.param(b"GET / HTTP/1.1\r\nX: " + b"x" * 100 + b"\r\n\r\n", id="431"),
    ],
)
async def test_a_client_gone_before_its_error_page_is_not_an_error(data: bytes) -> None:
    client = GoneClient(data)
    # An exception here would crash trio.serve_tcp, and with it every other connection.
    await handle_connection(
        client,  # type: ignore[arg-type]
        RouteTable(),
        max_header_bytes=64,
        header_timeout=10.0,
    )
    assert client.closed


async def test_a_client_gone_before_its_head_reaches_the_app(nursery: trio.Nursery) -> None:
    seen: list[bytes] = []
    app = await serve(nursery, partial(echo_backend, seen))
    client = GoneClient(head_for("echo.test") + b"body")
    table = RouteTable({"echo.test": Route("127.0.0.1", app)})
    with trio.fail_after(5):
        await handle_connection(
            client,  # type: ignore[arg-type]
            table,
            max_header_bytes=1024,
            header_timeout=10.0,
        )
    assert client.closed
