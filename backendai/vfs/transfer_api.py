"""The storage proxy's client-facing API: tus 1.0 uploads and downloads, authorised by token.

A bare ASGI application (no framework between the socket and the disk): the
request body is pulled from the server as it is written, so a slow disk holds
the client back instead of filling memory, and bytes go to and from the disk
in large chunks on worker threads.

- ``OPTIONS /upload``: tus capabilities.
- ``POST /upload?token=``: tus creation (``Upload-Length`` must match the token).
- ``HEAD /upload?token=``: ``Upload-Offset`` and ``Upload-Length``.
- ``PATCH /upload?token=``: bytes at ``Upload-Offset`` (409 when it is not the
  current offset); the file appears at its path when the last byte is in.
- ``GET /download?token=``: a file (``Range: bytes=`` honoured), or a directory
  as a streamed zip.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import trio

from ..config import Secret
from ..errors import APIError, Conflict, InvalidAPIParameters, NotFound
from . import uploads
from .downloads import serve_download
from .tokens import Operation, TransferClaims, verify_token
from .volumes import Volumes

__all__ = ["CHUNK", "TransferApp"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CHUNK = 8 * 1024 * 1024
_DRAIN_LIMIT = 16 * 1024 * 1024
_TUS = [(b"tus-resumable", b"1.0.0")]
_PROBLEM_BASE = "https://api.backend.ai/probs/"


async def respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_problem(send: Send, e: APIError, *, close: bool = False) -> None:
    body = {"type": _PROBLEM_BASE + e.slug, "title": e.title, "msg": str(e)}
    headers = [*_TUS, (b"content-type", b"application/problem+json")]
    if close:
        headers.append((b"connection", b"close"))
    await respond(send, e.status, headers, json.dumps(body).encode())


class _BodyTracker:
    """Passes ASGI messages through, noting whether the request body has ended."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = False

    async def receive(self) -> MutableMapping[str, Any]:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            self.done = True
        return message

    async def drain(self, limit: int) -> None:
        taken = 0
        while not self.done and taken < limit:
            taken += len((await self.receive()).get("body", b""))


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k.lower() == name:
            return bytes(v).decode("latin-1")
    return None


def _int_header(scope: Scope, name: bytes) -> int | None:
    raw = _header(scope, name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidAPIParameters(f"header {name.decode()}: {raw!r} is not a non-negative integer")
    return int(raw)


class TransferApp:
    """ASGI app for /upload and /download (and /v1/health); anything else is a 404."""

    def __init__(
        self,
        volumes: Volumes,
        secret: Secret,
        *,
        limiter: trio.CapacityLimiter,
        sync_uploads: bool = True,
    ) -> None:
        self._sync = sync_uploads  # flush a finished upload before it appears
        self._volumes = volumes
        self._secret = secret
        self._limiter = limiter
        self._folder_locks: dict[tuple[str, str], trio.Lock] = {}
        self._busy: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and the like: nothing to set up
        if scope["path"] == "/v1/health":
            await respond(send, 200, [(b"content-type", b"application/json")], b'{"status": "ok"}')
            return
        if scope["path"] not in ("/upload", "/download"):
            await respond_problem(
                send, NotFound(f"{scope['path']}: the transfer API serves /upload and /download")
            )
            return
        body = _BodyTracker(receive)
        try:
            await self._dispatch(scope, body.receive, send)
        except APIError as e:
            log.info("%s %s refused: %s", scope["method"], scope["path"], e)
            # A client still sending a refused body reads no answer until the body is gone:
            # take a little of it, and otherwise close the connection after answering.
            with trio.move_on_after(5):
                await body.drain(_DRAIN_LIMIT)
            await respond_problem(send, e, close=not body.done)

    def _thread(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if scope["path"] == "/upload" and method == "OPTIONS":
            await respond(
                send,
                204,
                [
                    *_TUS,
                    (b"tus-version", b"1.0.0"),
                    (b"tus-extension", b"creation"),
                    (b"tus-max-size", str(2**62).encode()),
                ],
            )
            return
        query = parse_qs(bytes(scope["query_string"]).decode("latin-1"))
        token = (query.get("token") or [""])[0]
        if not token:
            raise InvalidAPIParameters("query parameter 'token' is missing")
        op: Operation = "download" if scope["path"] == "/download" else "upload"
        claims = verify_token(self._secret, token, op, now=time.time())
        backend = self._volumes.get(claims.volume)
        if op == "download":
            if method not in ("GET", "HEAD"):
                raise InvalidAPIParameters(f"method {method} on /download; expected GET")
            await serve_download(backend, claims, scope, send, thread=self._thread)
            return
        dst_dir = (query.get("dst_dir") or [""])[0] or None
        path = uploads.destination(claims, dst_dir)
        if method == "HEAD":
            await self._head(backend, claims, path, send)
        elif method == "POST":
            length = _int_header(scope, b"upload-length")
            if length is not None and length != claims.size:
                raise InvalidAPIParameters(
                    f"Upload-Length {length} differs from the {claims.size} bytes the token allows"
                )
            up = await self._begin(backend, claims, path)
            location = f"{scope['path']}?{bytes(scope['query_string']).decode('latin-1')}"
            if up.offset == up.length:
                await self._finish(backend, claims.folder, up)
            await respond(
                send,
                201,
                [*_TUS, (b"location", location.encode()), (b"upload-offset", b"%d" % up.offset)],
            )
        elif method == "PATCH":
            await self._patch(backend, claims, path, scope, receive, send)
        else:
            raise InvalidAPIParameters(f"method {method} on /upload; expected a tus 1.0 method")

    async def _finish(self, backend: Any, folder: str, up: uploads.Upload) -> None:
        finish = partial(uploads.finish_upload, sync=self._sync)
        await self._thread(finish, backend, folder, up, self._volumes.owner)

    async def _begin(self, backend: Any, claims: TransferClaims, path: str) -> uploads.Upload:
        lock = self._folder_locks.setdefault((claims.volume, claims.folder), trio.Lock())
        async with lock:
            up: uploads.Upload = await self._thread(uploads.begin_upload, backend, claims, path)
        return up

    async def _head(self, backend: Any, claims: TransferClaims, path: str, send: Send) -> None:
        up = await self._thread(uploads.find_upload, backend, claims, path)
        offset = 0 if up is None else up.offset
        await respond(
            send,
            200,
            [
                *_TUS,
                (b"upload-offset", b"%d" % offset),
                (b"upload-length", b"%d" % (claims.size or 0)),
                (b"cache-control", b"no-store"),
            ],
        )

    async def _patch(
        self,
        backend: Any,
        claims: TransferClaims,
        path: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        ctype = _header(scope, b"content-type") or ""
        if ctype.split(";")[0].strip() != "application/offset+octet-stream":
            raise InvalidAPIParameters(
                f"Content-Type {ctype!r}; expected application/offset+octet-stream"
            )
        offset = _int_header(scope, b"upload-offset")
        if offset is None:
            raise InvalidAPIParameters("header Upload-Offset is missing")
        up = await self._begin(backend, claims, path)
        if up.key in self._busy:
            raise Conflict(f"another PATCH is writing {path!r}; retry after HEAD")
        if offset != up.offset:
            raise Conflict(f"Upload-Offset {offset} is not the current offset {up.offset}")
        declared = _int_header(scope, b"content-length")
        if declared is not None and offset + declared > up.length:
            raise InvalidAPIParameters(
                f"{declared} bytes at offset {offset} go past the upload's length {up.length}"
            )
        self._busy.add(up.key)
        try:
            offset = await self._receive_into(up, offset, receive)
        finally:
            self._busy.discard(up.key)
        if offset == up.length:
            await self._finish(backend, claims.folder, up)
            log.info("upload of %s (%d bytes) to %s complete", path, up.length, claims.folder)
        await respond(send, 204, [*_TUS, (b"upload-offset", b"%d" % offset)])

    async def _receive_into(self, up: uploads.Upload, offset: int, receive: Receive) -> int:
        """Write the request body at *offset* in large chunks; the offset reached.

        A writer task puts each chunk on disk (in a worker thread) while the next one is
        received, so the socket never waits for the disk.  What arrived before a
        disconnect is written, so a resume starts after it.
        """
        send_chan, recv_chan = trio.open_memory_channel[list[bytes]](2)
        written = offset
        error: APIError | None = None

        async def writer(cancel: trio.CancelScope) -> None:
            nonlocal written, error
            async with recv_chan:
                async for data in recv_chan:
                    try:
                        with trio.CancelScope(shield=True):  # a chunk received lands whole
                            written = await self._thread(uploads.append_chunk, up, written, data)
                    except APIError as e:  # out of quota: the upload was dropped
                        error = e
                        cancel.cancel()
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, nursery.cancel_scope)
            async with send_chan:
                # Pieces as received, written together (pwritev): no copying into one buffer.
                pieces: list[bytes] = []
                held = 0
                received = offset
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    body = message.get("body", b"")
                    if received + held + len(body) > up.length:
                        error = InvalidAPIParameters(
                            f"the body goes past the upload's length {up.length} at offset {offset}"
                        )
                        pieces = []
                        break
                    pieces.append(body)
                    held += len(body)
                    more = bool(message.get("more_body"))
                    if held >= CHUNK:
                        received += held
                        await send_chan.send(pieces)
                        pieces, held = [], 0
                if pieces:
                    await send_chan.send(pieces)
        if error is not None:
            raise error
        return written
