"""Files of a kernel over the agent's RPC API, streamed through the kernel runner.

::

    GET  /v1/kernels/{kid}/files?path=P           -> {"path", "abspath", "files": [{name, type, size, mode, mtime}]}
    GET  /v1/kernels/{kid}/files/content?path=P   -> the file's bytes
    GET  /v1/kernels/{kid}/files/archive?path=P   -> a tar of the file or directory
    POST /v1/kernels/{kid}/files?path=P           (raw body) -> {"path", "size"}

Paths are relative to the kernel's work directory (``/home/work/...`` is
accepted too); the runner refuses ``..``, other absolute paths and symlink
escapes.  Downloads hold at most a chunk in memory.  Uploads bypass Quart's
request body, which buffers without limit: an ASGI middleware reads the body
only as fast as the runner writes it, and refuses more than
``agent.max_upload_bytes`` with 413 (the half-written file is removed).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from quart import Response, request
from quart_trio import QuartTrio

from ..config import Secret
from ..errors import (
    APIError,
    AuthenticationFailed,
    InvalidAPIParameters,
    KernelError,
    KernelNotFound,
    PayloadTooLarge,
)
from .execution import ExecutionService
from .runner_client import RunnerConnection, check_reply

__all__ = ["UploadMiddleware", "add_file_routes"]

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
# After refusing an upload, read (and drop) at most this much more of its body so that
# the client sees the answer instead of a reset connection.
DRAIN_LIMIT = 64 * 1024 * 1024
_UPLOAD_PATH = re.compile(r"/v1/kernels/([^/]+)/files")


def _path_arg() -> str:
    path = request.args.get("path")
    if not path:
        raise InvalidAPIParameters(
            "query parameter 'path' is missing; expected a path under /home/work"
        )
    return path


def _decode(data: Any, kernel_id: str) -> bytes:
    try:
        return base64.b64decode(data or "", validate=True)
    except (binascii.Error, ValueError) as e:
        raise KernelError(f"kernel {kernel_id!r}: runner sent data that is not base64: {e}") from e


def add_file_routes(app: QuartTrio, service: ExecutionService) -> None:
    @app.route("/v1/kernels/<kernel_id>/files", methods=["GET"])
    async def list_files(kernel_id: str) -> Response:
        path = request.args.get("path") or "."
        reply = await service.request(
            kernel_id, {"op": "list-files", "path": path}, f"list {path!r} in kernel {kernel_id!r}"
        )
        body = {k: reply.get(k) for k in ("path", "abspath", "files", "truncated")}
        return Response(json.dumps(body), content_type="application/json")

    @app.route("/v1/kernels/<kernel_id>/files/content", methods=["GET"])
    async def file_content(kernel_id: str) -> Response:
        path = _path_arg()
        what = f"read {path!r} in kernel {kernel_id!r}"
        conn = await service.connect(kernel_id)
        try:
            first = await conn.request({"op": "read-file", "path": path, "offset": 0}, what)
        except BaseException:
            await conn.aclose()
            raise

        size = int(first["size"])

        async def chunks() -> AsyncIterator[bytes]:
            # The Content-Length promised is the size at the first read: a file that grows
            # meanwhile is cut there.
            reply, sent = first, 0
            try:
                while True:
                    data = _decode(reply.get("data"), kernel_id)[: size - sent]
                    if data:
                        yield data
                        sent += len(data)
                    if reply.get("eof") or not data or sent >= size:
                        return
                    read = {"op": "read-file", "path": path, "offset": sent, "length": size - sent}
                    reply = await conn.request(read, what)
            finally:
                await conn.aclose()

        return _stream(chunks(), "application/octet-stream", {"Content-Length": str(size)})

    @app.route("/v1/kernels/<kernel_id>/files/archive", methods=["GET"])
    async def archive(kernel_id: str) -> Response:
        path = request.args.get("path") or "."
        what = f"archive {path!r} in kernel {kernel_id!r}"
        conn = await service.connect(kernel_id)
        try:
            await conn.request({"op": "archive", "path": path}, what)
        except BaseException:
            await conn.aclose()
            raise
        return _stream(_archive_chunks(conn, kernel_id, what), "application/x-tar", {})


async def _archive_chunks(
    conn: RunnerConnection, kernel_id: str, what: str
) -> AsyncIterator[bytes]:
    try:
        while True:
            message = check_reply(await conn.receive(), what)
            if message.get("op") == "end":
                if message.get("skipped"):
                    log.info("%s: %s unreadable entries left out", what, message["skipped"])
                return
            yield _decode(message.get("data"), kernel_id)
    finally:
        await conn.aclose()


def _stream(body: AsyncIterator[bytes], content_type: str, headers: dict[str, str]) -> Response:
    response = Response(body, content_type=content_type, headers=headers)
    response.timeout = None  # a large file takes as long as it takes
    return response


class _Body:
    """The request body, pulled one ASGI message at a time (so the server applies backpressure)."""

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self.done = False

    async def next(self) -> bytes:
        """The next piece; sets ``done`` after the last one.  A client gone is an error."""
        message = await self._receive()
        if message["type"] != "http.request":
            self.done = True
            raise InvalidAPIParameters("the client went away in the middle of the upload")
        self.done = not message.get("more_body", False)
        return bytes(message.get("body", b""))

    async def drain(self) -> None:
        """Read and drop what is left, up to DRAIN_LIMIT bytes."""
        drained = 0
        while not self.done and drained <= DRAIN_LIMIT:
            try:
                drained += len(await self.next())
            except InvalidAPIParameters:
                return


class UploadMiddleware:
    """ASGI: ``POST /v1/kernels/{kid}/files`` streamed to the runner with backpressure."""

    def __init__(self, app: Any, service: ExecutionService, secret: Secret, limit: int) -> None:
        self.app = app
        self.service = service
        self.expected = f"Bearer {secret.reveal()}".encode()
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = _UPLOAD_PATH.fullmatch(scope.get("path", ""))
        if scope["type"] != "http" or scope.get("method") != "POST" or match is None:
            await self.app(scope, receive, send)
            return
        body = _Body(receive)
        try:
            result = await self.upload(match.group(1), scope, body)
        except APIError as e:
            status, problem = e.status, _problem(e.slug, str(e))
        except KernelNotFound as e:
            status, problem = 404, _problem("kernel-not-found", str(e))
        except KernelError as e:
            log.warning("upload failed: %s", e)
            status, problem = 500, _problem("kernel-error", str(e))
        else:
            await _respond(send, 201, result)
            return
        await body.drain()
        await _respond(send, status, problem)

    async def upload(self, kernel_id: str, scope: dict[str, Any], body: _Body) -> dict[str, Any]:
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if not hmac.compare_digest(headers.get("authorization", b""), self.expected):
            raise AuthenticationFailed("missing or wrong cluster secret")
        path = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("path") or [""])[0]
        if not path:
            raise InvalidAPIParameters(
                "query parameter 'path' is missing; expected a path under /home/work"
            )
        length = headers.get("content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            raise _too_large(str(int(length)), self.limit)
        what = f"upload {path!r} to kernel {kernel_id!r}"
        conn = await self.service.connect(kernel_id)
        try:
            # Opening the upload checks the path before any of the body is read.
            opened = await conn.request({"op": "write-file", "path": path, "data": ""}, what)
            size, pending = 0, bytearray()
            while not body.done or pending:
                if not body.done:
                    pending += await body.next()
                if size + len(pending) > self.limit:
                    raise _too_large(f"more than {self.limit}", self.limit)
                while len(pending) >= CHUNK or (body.done and pending):
                    piece = base64.b64encode(pending[:CHUNK]).decode()
                    del pending[:CHUNK]
                    write = {"op": "write-file", "path": path, "offset": size, "data": piece}
                    reply = await conn.request({**write, "final": body.done and not pending}, what)
                    size = int(reply["size"])
            if size == 0:  # an empty file: nothing went with final yet
                final = {"op": "write-file", "path": path, "offset": 0, "data": "", "final": True}
                await conn.request(final, what)
            return {"path": opened["path"], "size": size}
        finally:
            await conn.aclose()  # before the final chunk, the runner removes the partial file


def _too_large(size: str, limit: int) -> APIError:
    return PayloadTooLarge(
        f"upload of {size} bytes exceeds the agent's limit of {limit} bytes (agent.max_upload_bytes)"
    )


def _problem(slug: str, msg: str) -> dict[str, Any]:
    return {"type": f"https://api.backend.ai/probs/{slug}", "title": slug, "msg": msg}


async def _respond(send: Any, status: int, body: dict[str, Any]) -> None:
    content_type = b"application/problem+json" if status >= 400 else b"application/json"
    data = json.dumps(body).encode()
    headers = [(b"content-type", content_type), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
