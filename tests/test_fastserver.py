"""The transfer server's HTTP/1.1 over raw sockets: keep-alive, HEAD, refusals, sendfile."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from backendai.vfs.fastserver import serve_transfers


async def echo_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """Echoes the body; ``/file`` sends the file named in the query with zerocopysend."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message["body"]
        if not message["more_body"]:
            break
    if scope["path"] == "/file":
        path = trio.Path(scope["query_string"].decode())
        size = (await path.stat()).st_size
        headers = [(b"content-length", b"%d" % size)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with await trio.open_file(path, "rb") as f:
            await send({"type": "http.response.zerocopysend", "file": f.wrapped, "count": size})
        return
    reply = b"%s %s %d:" % (scope["method"].encode(), scope["raw_path"], len(body)) + body
    headers = [(b"content-length", b"%d" % len(reply))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_transfers, echo_app, "127.0.0.1", 0)
        nursery.cancel_scope.cancel()


async def _exchange(port: int, raw: bytes, *, until_close: bool = True) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        out = b""
        with trio.fail_after(30):
            while chunk := await stream.receive_some(65536):
                out += chunk
        return out


async def test_keep_alive_then_close(port: int) -> None:
    out = await _exchange(
        port,
        b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"HEAD /b HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert b"POST /a 5:hello" in out
    assert b"HEAD /b" not in out  # the head only
    assert out.endswith(b"GET /c 0:")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"501"),
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n", b"431"),
    ],
)
async def test_refusals(port: int, raw: bytes, status: bytes) -> None:
    out = await _exchange(port, raw)
    assert out.startswith(b"HTTP/1.1 " + status)


async def test_expect_continue(port: int) -> None:
    out = await _exchange(
        port,
        b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nok",
    )
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert out.endswith(b"PUT /x 2:ok")


async def test_sendfile_body(port: int, tmp_path: Path) -> None:
    data = os.urandom(40 * 1024 * 1024 + 7)
    (tmp_path / "f").write_bytes(data)
    out = await _exchange(
        port, f"GET /file?{tmp_path / 'f'} HTTP/1.1\r\nConnection: close\r\n\r\n".encode()
    )
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-length: %d" % len(data) in head
    assert body == data


async def test_an_app_error_is_a_500_and_the_server_goes_on() -> None:
    async def broken(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("bug")

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_transfers, broken, "127.0.0.1", 0)
        for _ in range(2):
            out = await _exchange(port, b"GET / HTTP/1.1\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 500")
        nursery.cancel_scope.cancel()


async def test_a_silent_connection_is_closed(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(serve_transfers, idle_timeout=5.0), echo_app, "127.0.0.1", 0
        )
        for raw in (b"", b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                if raw:
                    await stream.send_all(raw)
                with trio.fail_after(60):  # virtual time: the server gives up after 5 s
                    while await stream.receive_some(1024):
                        pass
        nursery.cancel_scope.cancel()
