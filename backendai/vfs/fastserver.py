"""A small HTTP/1.1 server for the transfer API: large reads, and ``sendfile`` for downloads.

Hypercorn feeds a request body to the app 64 KiB at a time through h11, and
an ASGI app can only send bytes it has read; for bulk transfers both cost
more than the disk.  This server speaks just what the transfer API needs: one
request at a time per connection (keep-alive), ``Content-Length`` bodies
(``Transfer-Encoding`` is refused with 501), responses with a length or ended
by closing, and the ASGI ``http.response.zerocopysend`` extension, served with
``os.sendfile`` from a worker thread so a cold page cache does not stall the
event loop.  It runs a plain ASGI app, so the app stays testable under any
ASGI server.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from http import HTTPStatus
from typing import Any, NoReturn
from urllib.parse import unquote

import trio

from ..errors import UnavailableError

__all__ = ["serve_transfers"]

log = logging.getLogger(__name__)

App = Callable[..., Awaitable[None]]
_MAX_HEAD = 16 * 1024
_RECV = 1024 * 1024
_SENDFILE = 16 * 1024 * 1024


class _BadRequest(Exception):
    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status


def parse_head(raw: bytes) -> tuple[str, str, list[tuple[bytes, bytes]]]:
    """Request line and headers of *raw* (up to, not including, the blank line)."""
    try:
        lines = raw.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _BadRequest(400, "malformed request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(505, f"{version} is not supported; expected HTTP/1.1")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, f"malformed header line {line[:60]!r}")
        headers.append((name.lower().encode("latin-1"), value.strip().encode("latin-1")))
    return method, target, headers


class _Connection:
    def __init__(self, app: App, stream: trio.SocketStream, port: int, idle: float) -> None:
        self.app = app
        self.stream = stream
        self.port = port
        self.idle = idle  # seconds a client may send nothing (between requests, mid-body)
        self.buf = bytearray()
        self.closing = False

    async def run(self) -> None:
        try:
            while not self.closing:
                try:
                    with trio.move_on_after(self.idle) as waited:
                        head = await self._read_head()
                    if waited.cancelled_caught or head is None:  # silent too long, or gone
                        return
                    method, target, headers = parse_head(head)
                    await self._request(method, target, headers)
                except _BadRequest as e:
                    await self._plain(e.status, str(e))
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            return  # the client went away
        finally:
            with trio.move_on_after(1, shield=True):
                await self.stream.aclose()

    async def _read_head(self) -> bytes | None:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise _BadRequest(431, "request head too large")
            data = await self.stream.receive_some(_RECV)
            if not data:
                return None
            self.buf += data
        if end > _MAX_HEAD:
            raise _BadRequest(431, "request head too large")
        head = bytes(self.buf[:end])
        del self.buf[: end + 4]
        return head

    async def _plain(self, status: int, msg: str) -> None:
        body = msg.encode()
        await self.stream.send_all(
            b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, HTTPStatus(status).phrase.encode(), len(body), body)
        )
        # Lingering close: closing with unread input would reset the connection and could
        # lose the answer; stop sending, then read (and drop) what the client still sends.
        await self.stream.send_eof()
        with trio.move_on_after(2):
            while await self.stream.receive_some(_RECV):
                pass

    async def _request(self, method: str, target: str, headers: list[tuple[bytes, bytes]]) -> None:
        hmap = dict(headers)
        if b"transfer-encoding" in hmap:
            raise _BadRequest(
                501, "Transfer-Encoding bodies are not supported; send Content-Length"
            )
        raw_length = hmap.get(b"content-length", b"0")
        if not raw_length.isdigit():
            raise _BadRequest(400, f"Content-Length {raw_length!r} is not a number")
        left = int(raw_length)
        if hmap.get(b"connection", b"").lower() == b"close":
            self.closing = True
        if hmap.get(b"expect", b"").lower() == b"100-continue":
            await self.stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        path, _, query = target.partition("?")
        peer = self.stream.socket.getpeername()
        scope: MutableMapping[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": (peer[0], peer[1]),
            "server": ("127.0.0.1", self.port),
            "extensions": {"http.response.zerocopysend": {}},
        }
        pending_head = b""  # sent with the first body bytes

        async def receive() -> dict[str, Any]:
            nonlocal left
            if left <= 0:
                return {"type": "http.disconnect"}
            if self.buf:  # what came in with the head
                body = bytes(self.buf[:left])
                del self.buf[: len(body)]
            else:  # straight from the socket, uncopied
                body = b""
                with trio.move_on_after(self.idle):  # a stalled body counts as a disconnect
                    body = await self.stream.receive_some(min(left, _RECV))
                if not body:
                    left = 0
                    self.closing = True
                    return {"type": "http.disconnect"}
            left -= len(body)
            return {"type": "http.request", "body": body, "more_body": left > 0}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal pending_head
            kind = message["type"]
            if kind == "http.response.start":
                out = [b"HTTP/1.1 %d %s" % (message["status"], _phrase(message["status"]))]
                has_length = False
                for k, v in message.get("headers", []):
                    has_length = has_length or k.lower() == b"content-length"
                    if k.lower() == b"connection" and v.lower() == b"close":
                        self.closing = True
                    out.append(bytes(k) + b": " + bytes(v))
                if not has_length:
                    self.closing = True  # no length: the end of the body is the end of the stream
                    out.append(b"connection: close")
                pending_head = b"\r\n".join(out) + b"\r\n\r\n"
                return
            head, pending_head = pending_head, b""
            if method == "HEAD":  # the head only, whatever the app sends
                if head:
                    await self.stream.send_all(head)
            elif kind == "http.response.body":
                await self.stream.send_all(head + message.get("body", b""))
            elif kind == "http.response.zerocopysend":
                if head:
                    await self.stream.send_all(head)
                await self._sendfile(message["file"], message.get("offset", 0), message["count"])
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r}")

        started = False

        async def send_tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            raise
        except Exception:
            # One request's bug must not take the server down; the client learns of it.
            log.exception("transfer API: %s %s failed", method, path)
            self.closing = True
            if not started:
                await self._plain(500, "internal error; see the storage proxy log")
            return
        if left > 0:
            self.closing = True  # the app left body bytes unread: the stream is out of step

    async def _sendfile(self, file: Any, offset: int, count: int) -> None:
        sock = self.stream.socket
        fd = file.fileno()

        def chunk(offset: int, n: int) -> int:
            try:
                return os.sendfile(sock.fileno(), fd, offset, n)
            except BlockingIOError:
                return -1
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.ECONNRESET):
                    raise trio.BrokenResourceError from e
                raise

        while count > 0:
            n = await trio.to_thread.run_sync(chunk, offset, min(count, _SENDFILE))
            if n < 0:
                await trio.lowlevel.wait_writable(sock)
                continue
            if n == 0:
                self.closing = True  # the file shrank; the client sees a short body
                return
            offset += n
            count -= n


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


async def _handle(app: App, port: int, idle: float, stream: trio.SocketStream) -> None:
    await _Connection(app, stream, port, idle).run()


async def serve_transfers(
    app: App,
    host: str,
    port: int,
    *,
    idle_timeout: float = 120.0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve *app* on host:port (0: any free port); ``started()`` carries the bound port.

    A connection silent for *idle_timeout* seconds (waiting for a request, or in the
    middle of a body) is closed.
    """
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        raise UnavailableError(f"transfer API: cannot listen on {host}:{port}: {e.strerror}") from e
    bound = int(listeners[0].socket.getsockname()[1])
    log.info("transfer API listening on %s:%d", host, bound)
    task_status.started(bound)
    await trio.serve_listeners(partial(_handle, app, bound, idle_timeout), listeners)
    raise AssertionError("serve_listeners returned")
