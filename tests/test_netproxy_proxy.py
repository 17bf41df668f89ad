"""The app proxy on loopback: routing, keep-alive, websockets, half-close, limits, bad clients.

Backends and clients speak HTTP through h11 or trio-websocket (not our parser),
so the proxy's framing is checked against an independent implementation.
After each bad input the same proxy must still serve a good request.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from trio_websocket import open_websocket, serve_websocket

from backendai.netproxy import ProxySettings, Route, RouteTable, handle_connection

from .conftest import require
from .netproxy_helpers import (
    H11Client,
    Seen,
    exchange,
    h11_backend,
    read_exactly,
    read_until_eof,
    serve,
    start_proxy,
    status_of,
)


async def still_serving(proxy: int, nursery: trio.Nursery) -> None:
    """The proxy answers a good request routed to the app 'ok.test'."""
    with trio.fail_after(10):
        response = await exchange(
            proxy, b"GET /alive HTTP/1.1\r\nHost: ok.test\r\nConnection: close\r\n\r\n"
        )
    assert status_of(response) == 200
    assert response.endswith(b"ok GET /alive ")


async def proxy_with_ok_app(nursery: trio.Nursery, **settings: object) -> tuple[int, Seen]:
    seen = Seen()
    app = await serve(nursery, partial(h11_backend, "ok", seen))
    proxy, _ = await start_proxy(nursery, {"ok.test": app}, **settings)
    return proxy, seen


# -- routing and pages -------------------------------------------------------------------


async def test_unknown_host_gets_a_404_page_naming_it(nursery: trio.Nursery) -> None:
    proxy, _ = await proxy_with_ok_app(nursery)
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: Nope.Example:8080\r\n\r\n")
    assert status_of(response) == 404
    assert b"Content-Type: text/html" in response
    assert b"no app is served at host 'nope.example'" in response
    head, _, body = response.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    await still_serving(proxy, nursery)


async def test_error_pages_escape_what_the_client_sent(nursery: trio.Nursery) -> None:
    proxy, _ = await start_proxy(nursery, {})
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: <b>x</b>\r\n\r\n")
    assert status_of(response) == 404
    assert b"<b>x</b>" not in response
    assert b"&lt;b&gt;x&lt;/b&gt;" in response


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, b"malformed header line 'NoColon'"),
        (b"GARBAGE\r\n\r\n", 400, b"malformed request line 'GARBAGE'"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400, b"malformed request line"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"more than one Host header"),
        (
            b"POST / HTTP/1.1\r\nHost: ok.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400,
            b"both Transfer-Encoding and Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: ok.test\r\nContent-Length: -3\r\n\r\n",
            400,
            b"is not a byte count",
        ),
    ],
)
async def test_malformed_requests_get_a_400_page(
    nursery: trio.Nursery, data: bytes, status: int, message: bytes
) -> None:
    proxy, seen = await proxy_with_ok_app(nursery)
    with trio.fail_after(5):
        response = await exchange(proxy, data)
    assert status_of(response) == status
    assert message in response
    assert seen.requests == []
    await still_serving(proxy, nursery)


async def test_a_route_to_a_closed_port_gets_a_502_page(nursery: trio.Nursery) -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()
    proxy, limiter = await start_proxy(nursery, {"down.test": closed_port})
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: down.test\r\n\r\n")
    assert status_of(response) == 502
    assert b"the app 'down.test' is not answering" in response
    assert limiter.open_to(Route("127.0.0.1", closed_port)) == 0


async def test_an_app_that_closes_without_answering_gets_a_502_page(nursery: trio.Nursery) -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some()

    app = await serve(nursery, hang_up)
    proxy, _ = await start_proxy(nursery, {"mute.test": app})
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: mute.test\r\n\r\n")
    assert status_of(response) == 502
    assert b"the app 'mute.test' closed the connection without answering" in response


# -- keep-alive: each request routed on its own ---------------------------------------------


async def test_keep_alive_routes_each_request_and_frames_bodies(nursery: trio.Nursery) -> None:
    a_seen, b_seen = Seen(), Seen()
    a = await serve(nursery, partial(h11_backend, "A", a_seen))
    b = await serve(nursery, partial(h11_backend, "B", b_seen))
    proxy, _ = await start_proxy(nursery, {"a.test": a, "b.test": b})
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream:
            client = H11Client(stream)
            assert (await client.request("GET", "a.test", "/1"))[2] == b"A GET /1 "
            assert (await client.request("POST", "a.test", "/2", b"x" * 100_000))[2] == (
                b"A POST /2 " + b"x" * 100_000
            )
            assert (await client.request("POST", "b.test", "/3/chunked", b"hello", chunked=True))[
                2
            ] == b"B POST /3/chunked hello"
            assert (await client.request("GET", "a.test:80", "/4/chunked"))[
                2
            ] == b"A GET /4/chunked "
            status, _, body = await client.request("GET", "nope.test", "/5")
    assert status == 404
    assert b"no app is served at host 'nope.test'" in body
    assert [r[1] for r in a_seen.requests] == ["/1", "/2", "/4/chunked"]
    assert [r[1] for r in b_seen.requests] == ["/3/chunked"]
    # A's connection waited in the idle pool while the client used B, and was used again.
    assert a_seen.connections == 1
    assert b_seen.connections == 1
    assert a_seen.requests[0][2]["x-forwarded-for"] == "127.0.0.1"
    assert a_seen.requests[0][2]["x-forwarded-proto"] == "http"


async def test_keep_alive_reuses_one_app_connection(nursery: trio.Nursery) -> None:
    proxy, seen = await proxy_with_ok_app(nursery)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream:
            client = H11Client(stream)
            for i in range(20):
                status, _, body = await client.request("GET", "ok.test", f"/{i}")
                assert (status, body) == (200, f"ok GET /{i} ".encode())
    assert seen.connections == 1
    assert len(seen.requests) == 20


async def test_app_connections_are_reused_across_clients(nursery: trio.Nursery) -> None:
    proxy, seen = await proxy_with_ok_app(nursery)
    with trio.fail_after(10):
        for i in range(5):
            stream = await trio.open_tcp_stream("127.0.0.1", proxy)
            async with stream:
                assert (await H11Client(stream).request("GET", "ok.test", f"/{i}"))[0] == 200
            await trio.testing.wait_all_tasks_blocked()
    assert len(seen.requests) == 5
    assert seen.connections == 1


async def test_a_clients_connection_close_does_not_close_the_app_connection(
    nursery: trio.Nursery,
) -> None:
    proxy, seen = await proxy_with_ok_app(nursery)
    with trio.fail_after(10):
        for i in range(3):
            request = (
                f"GET /{i} HTTP/1.1\r\nHost: ok.test\r\nConnection: close\r\nKeep-Alive: 5\r\n\r\n"
            )
            response = await exchange(proxy, request.encode())
            assert response.endswith(f"ok GET /{i} ".encode())
            await trio.testing.wait_all_tasks_blocked()
    assert seen.connections == 1
    assert all("connection" not in h and "keep-alive" not in h for _, _, h, _ in seen.requests)


async def keep_alive_app(stream: trio.SocketStream) -> None:
    """Answers each request 'ok', saying that it keeps its connection open."""
    buf = b""
    while data := await stream.receive_some():
        buf += data
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1)
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                b"Content-Length: 2\r\n\r\nok"
            )


@pytest.mark.parametrize(
    ("request_head", "closes"),
    [
        (b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", False),
    ],
)
async def test_a_response_on_a_closing_client_connection_says_so(
    nursery: trio.Nursery, request_head: bytes, closes: bool
) -> None:
    """The app keeps its connection open, the client's ends after this response: the client
    is told 'Connection: close', not the app's keep-alive (else it would send its next request
    into a closing connection)."""
    app = await serve(nursery, keep_alive_app)
    proxy, _ = await start_proxy(nursery, {"a.test": app})
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream:
            await stream.send_all(request_head)
            if not closes:
                await stream.send_eof()
            response = await read_until_eof(stream)
    head, _, body = response.partition(b"\r\n\r\n")
    assert status_of(response) == 200
    assert body == b"ok"
    lines = head.lower().split(b"\r\n")[1:]
    if closes:
        assert b"connection: close" in lines
        assert not any(line.startswith((b"connection: keep", b"keep-alive:")) for line in lines)
    else:
        assert b"connection: keep-alive" in lines


async def test_an_app_closing_an_idle_connection_costs_no_request(nursery: trio.Nursery) -> None:
    """An app may close a kept-alive connection while it waits in the pool: send again, fresh."""
    connections = 0

    async def one_then_hang_up(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        async with stream:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += await stream.receive_some()
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    app = await serve(nursery, one_then_hang_up)
    proxy, _ = await start_proxy(nursery, {"a.test": app})
    with trio.fail_after(10):
        for _ in range(3):
            response = await exchange(
                proxy, b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
            )
            assert response.endswith(b"\r\n\r\nok")
            await trio.testing.wait_all_tasks_blocked()
    assert connections == 3


async def test_an_idle_kept_alive_connection_is_closed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    proxy, _ = await proxy_with_ok_app(nursery, keepalive_timeout=30.0)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy)
    async with stream:
        client = H11Client(stream)
        assert (await client.request("GET", "ok.test", "/"))[0] == 200
        start = trio.current_time()
        assert await read_until_eof(stream) == b""
        assert 30.0 <= trio.current_time() - start < 31.0


# -- raw splicing: websocket upgrades and half-close ------------------------------------------


async def test_websocket_echo_through_the_proxy(nursery: trio.Nursery) -> None:
    async def echo(request: object) -> None:
        ws = await request.accept()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            while True:
                await ws.send_message(await ws.get_message())

    server = await nursery.start(partial(serve_websocket, echo, "127.0.0.1", 0, ssl_context=None))
    proxy, _ = await start_proxy(nursery, {"127.0.0.1": server.port})
    with trio.fail_after(10):
        for _ in range(3):  # and again: the proxy keeps serving after each
            async with open_websocket(
                "127.0.0.1", proxy, "/kernels/1/channels", use_ssl=False
            ) as ws:
                for msg in ["hello", "x" * 200_000, "ünïcode"]:
                    await ws.send_message(msg)
                    assert await ws.get_message() == msg
                await ws.send_message(b"\x00\x01binary")
                assert await ws.get_message() == b"\x00\x01binary"


async def upgrade_echo(seen: list[bytes], stream: trio.SocketStream) -> None:
    """Switch protocols, then echo every byte; after the client's EOF say how many, then close."""
    async with stream:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive_some()
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        )
        total = len(buf.partition(b"\r\n\r\n")[2])
        if total:
            await stream.send_all(buf.partition(b"\r\n\r\n")[2])
        while data := await stream.receive_some():
            total += len(data)
            await stream.send_all(data)
        seen.append(b"EOF")
        await stream.send_all(b"[backend saw EOF after %d bytes]" % total)


UPGRADE = b"GET /echo HTTP/1.1\r\nHost: echo.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"


async def test_half_close_is_forwarded_and_the_app_can_still_answer(nursery: trio.Nursery) -> None:
    seen: list[bytes] = []
    app = await serve(nursery, partial(upgrade_echo, seen))
    proxy, _ = await start_proxy(nursery, {"echo.test": app})
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream:
            await stream.send_all(UPGRADE + b"ping")
            # The connection is live both ways before any EOF.
            assert await read_exactly(stream, len(SWITCHED) + 4) == SWITCHED + b"ping"
            assert seen == []
            await stream.send_eof()
            rest = await read_until_eof(stream)
    assert seen == [b"EOF"]
    assert rest == b"[backend saw EOF after 4 bytes]"


async def test_a_client_half_closing_after_a_request_still_gets_the_answer(
    nursery: trio.Nursery,
) -> None:
    proxy, _ = await proxy_with_ok_app(nursery)
    with trio.fail_after(5):
        response = await exchange(
            proxy, b"POST /p HTTP/1.1\r\nHost: ok.test\r\nContent-Length: 3\r\n\r\nabc", eof=True
        )
    assert status_of(response) == 200
    assert response.endswith(b"ok POST /p abc")
    await still_serving(proxy, nursery)


async def test_large_transfer_is_spliced_both_ways(nursery: trio.Nursery) -> None:
    seen: list[bytes] = []
    app = await serve(nursery, partial(upgrade_echo, seen))
    proxy, _ = await start_proxy(nursery, {"echo.test": app})
    payload = bytes(range(256)) * 8192  # 2 MiB
    received = b""
    with trio.fail_after(20):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream, trio.open_nursery() as inner:

            async def send() -> None:
                await stream.send_all(UPGRADE)
                for i in range(0, len(payload), 100_000):
                    await stream.send_all(payload[i : i + 100_000])
                await stream.send_eof()

            inner.start_soon(send)
            received = await read_until_eof(stream)
    assert received == SWITCHED + payload + b"[backend saw EOF after %d bytes]" % len(payload)


async def test_an_app_closing_first_ends_a_close_delimited_response(nursery: trio.Nursery) -> None:
    async def answer_and_close(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some()
            await stream.send_all(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")

    app = await serve(nursery, answer_and_close)
    proxy, _ = await start_proxy(nursery, {"bye.test": app})
    with trio.fail_after(5):
        response = await exchange(proxy, b"GET / HTTP/1.1\r\nHost: bye.test\r\n\r\n")
    assert response == b"HTTP/1.0 200 OK\r\n\r\nuntil the end"


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pieces", [1, 3])
async def test_a_head_larger_than_the_limit_gets_431(nursery: trio.Nursery, pieces: int) -> None:
    proxy, seen = await proxy_with_ok_app(nursery, max_header_bytes=1024)
    head = f"GET / HTTP/1.1\r\nHost: ok.test\r\nX-Big: {'x' * 2000}\r\n\r\n".encode()
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
    assert seen.requests == []
    await still_serving(proxy, nursery)


async def test_a_megabyte_of_headers_gets_431(nursery: trio.Nursery) -> None:
    proxy, seen = await proxy_with_ok_app(nursery)
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(1024))
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: ok.test\r\n" + headers + b"\r\n")
            response = await read_until_eof(stream)
    assert status_of(response) == 431
    assert b"the request head exceeds 16384 bytes" in response
    assert seen.requests == []
    await still_serving(proxy, nursery)


async def test_a_head_at_the_limit_is_accepted(nursery: trio.Nursery) -> None:
    head = b"GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n"
    proxy, _ = await start_proxy(nursery, {}, max_header_bytes=len(head))
    with trio.fail_after(5):
        response = await exchange(proxy, head)
    assert status_of(response) == 404


async def test_a_client_sending_nothing_gets_408(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    proxy, seen = await proxy_with_ok_app(nursery, header_timeout=10.0, keepalive_timeout=30.0)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy)
    async with stream:
        start = trio.current_time()
        response = await read_until_eof(stream)
        elapsed = trio.current_time() - start
    assert status_of(response) == 408
    assert b"the request head did not arrive within 10 s" in response
    assert 10.0 <= elapsed < 11.0
    assert seen.requests == []
    await still_serving(proxy, nursery)


async def test_a_client_sending_one_byte_per_second_gets_408(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The timeout bounds the whole head, not each read: one byte a second does not keep it open."""
    proxy, seen = await proxy_with_ok_app(nursery, header_timeout=10.0)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy)
    head = b"GET /slow HTTP/1.1\r\nHost: ok.test\r\n\r\n"

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
    assert b"the request head did not arrive within 10 s" in response
    assert 10.0 <= elapsed < 11.0
    assert seen.requests == []
    await still_serving(proxy, nursery)


async def test_connections_per_route_are_limited(nursery: trio.Nursery) -> None:
    seen: list[bytes] = []
    app = await serve(nursery, partial(upgrade_echo, seen))
    proxy, limiter = await start_proxy(nursery, {"echo.test": app}, max_connections_per_route=2)
    with trio.fail_after(10):
        held = [await trio.open_tcp_stream("127.0.0.1", proxy) for _ in range(2)]
        for stream in held:
            await stream.send_all(UPGRADE)
            assert await read_exactly(stream, len(SWITCHED)) == SWITCHED
        response = await exchange(proxy, UPGRADE)
        assert status_of(response) == 503
        assert b"the app 'echo.test' has too many connections (2)" in response
        await held[0].aclose()
        while limiter.open_to(Route("127.0.0.1", app)) > 1:  # noqa: ASYNC110 (the proxy's task)
            await trio.sleep(0.01)
        third = await trio.open_tcp_stream("127.0.0.1", proxy)
        async with third:
            await third.send_all(UPGRADE + b"hi")
            assert await read_exactly(third, len(SWITCHED) + 2) == SWITCHED + b"hi"
        await held[1].aclose()


async def test_a_client_leaving_early_does_not_stop_the_proxy(nursery: trio.Nursery) -> None:
    proxy, _ = await proxy_with_ok_app(nursery)
    with trio.fail_after(5):
        assert await exchange(proxy, b"", eof=True) == b""
        assert await exchange(proxy, b"GET / HTTP/1.1\r\n", eof=True) == b""
    await still_serving(proxy, nursery)


# -- TLS termination ----------------------------------------------------------------------


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    require(shutil.which("openssl") is not None, "the openssl command (apt-get install openssl)")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,DNS:ok.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_is_terminated_at_the_proxy(
    nursery: trio.Nursery, self_signed: tuple[Path, Path]
) -> None:
    from backendai.netproxy import bound_port, open_listeners, tls_context

    cert, key = self_signed
    seen = Seen()
    app = await serve(nursery, partial(h11_backend, "ok", seen))
    table = RouteTable({"ok.test": Route("127.0.0.1", app, name="ok.test")})
    handler = partial(handle_connection, router=table, settings=ProxySettings(scheme="https"))
    listeners = await open_listeners("127.0.0.1", 0, tls_context(str(cert), str(key)))
    await nursery.start(trio.serve_listeners, handler, listeners)
    port = bound_port(listeners[0])
    client_ctx = ssl.create_default_context(cafile=str(cert))
    with trio.fail_after(10):
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(raw, client_ctx, server_hostname="ok.test")
        async with stream:
            await stream.send_all(
                b"GET /tls HTTP/1.1\r\nHost: ok.test\r\nConnection: close\r\n\r\n"
            )
            response = b""
            with contextlib.suppress(trio.BrokenResourceError):
                while chunk := await stream.receive_some():
                    response += chunk
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"ok GET /tls ")
    assert seen.requests[0][2]["x-forwarded-proto"] == "https"
    # Plain HTTP spoken to the TLS port does not get through, and the proxy keeps serving.
    with trio.fail_after(10):
        assert b"ok GET" not in await exchange(port, b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n")


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
        pytest.param(b"GET / HTTP/1.1\r\nX: " + b"x" * 300 + b"\r\n\r\n", id="431"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n", id="answer"),
        pytest.param(UPGRADE, id="upgrade"),
    ],
)
async def test_a_client_gone_mid_exchange_is_not_an_error(
    nursery: trio.Nursery, data: bytes
) -> None:
    seen, echoed = Seen(), list[bytes]()
    ok = await serve(nursery, partial(h11_backend, "ok", seen))
    echo = await serve(nursery, partial(upgrade_echo, echoed))
    table = RouteTable({"ok.test": Route("127.0.0.1", ok), "echo.test": Route("127.0.0.1", echo)})
    client = GoneClient(data)
    # An exception here would crash trio.serve_tcp, and with it every other connection.
    with trio.fail_after(10):
        await handle_connection(client, table, ProxySettings(max_header_bytes=200))  # type: ignore[arg-type]
    assert client.closed
