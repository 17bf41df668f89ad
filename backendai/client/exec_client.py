"""Client side of code execution and session files: streams, uploads, downloads.

Functions over an :class:`~backendai.client.api.APIClient`; the CLI is built on them.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import trio
import trio_websocket

from ..errors import BackendAIError, UnavailableError
from .api import APIClient, APIResponseError

__all__ = [
    "ExecResult",
    "ExecStream",
    "download",
    "list_files",
    "open_exec_stream",
    "open_pty",
    "stream_execute",
    "upload",
]

ExecResult = dict[str, Any]
_FINAL = ("finished", "exec-timeout")
# Our manager keeps messages well under 1 MiB; be lenient with other servers.
_MAX_MESSAGE = 16 * 1024 * 1024


def _session_path(ref: str, suffix: str = "") -> str:
    return f"/session/{quote(ref, safe='')}{suffix}"


@asynccontextmanager
async def _websocket(
    api: APIClient, path: str
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    headers = api.signed_headers("GET", path)
    try:
        async with trio_websocket.open_websocket_url(
            api.websocket_base + path,
            extra_headers=headers,
            message_queue_size=64,
            max_message_size=_MAX_MESSAGE,
        ) as ws:
            yield ws
    except trio_websocket.HandshakeError as e:
        status = getattr(e, "status_code", None)
        body = getattr(e, "body", b"") or b""
        try:
            problem = json.loads(body)
            raise APIResponseError(
                status or 400,
                problem.get("type", "").rsplit("/", 1)[-1],
                problem.get("title", ""),
                problem.get("msg", ""),
            ) from None
        except ValueError:
            raise UnavailableError(f"websocket to {api.endpoint}{path} refused: {e}") from None
    except OSError as e:
        raise UnavailableError(f"cannot reach the manager at {api.endpoint}: {e}") from e


class ExecStream:
    """An open execute websocket: runs, one after another, without a handshake each."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws

    async def run(
        self,
        *,
        mode: str,
        code: str = "",
        options: dict[str, Any] | None = None,
        on_result: Callable[[ExecResult], None],
        ask_input: Callable[[ExecResult], Awaitable[str]],
    ) -> ExecResult:
        """Run code (query) or commands (batch); returns the final result."""
        ws = self.ws
        await ws.send_message(json.dumps({"mode": mode, "code": code, "options": options or {}}))
        while True:
            try:
                raw = await ws.get_message()
            except trio_websocket.ConnectionClosed as e:
                raise BackendAIError(
                    f"the execution stream closed before the run finished ({e.reason})"
                ) from None
            result: ExecResult = json.loads(raw)
            if result.get("status") == "error":
                raise BackendAIError(f"execution failed: {result.get('msg')}")
            on_result(result)
            if result["status"] in _FINAL:
                return result
            if result["status"] == "waiting-input":
                await ws.send_message(await ask_input(result))


@asynccontextmanager
async def open_exec_stream(api: APIClient, ref: str) -> AsyncIterator[ExecStream]:
    """The execute websocket of session *ref*, kept open for several runs."""
    path = _session_path(ref).replace("/session/", "/stream/session/", 1) + "/execute"
    async with _websocket(api, path) as ws:
        yield ExecStream(ws)


async def stream_execute(
    api: APIClient,
    ref: str,
    *,
    mode: str,
    code: str = "",
    options: dict[str, Any] | None = None,
    on_result: Callable[[ExecResult], None],
    ask_input: Callable[[ExecResult], Awaitable[str]],
) -> ExecResult:
    """One run (query or batch) on an execute websocket of its own; returns the final result."""
    async with open_exec_stream(api, ref) as stream:
        return await stream.run(
            mode=mode, code=code, options=options, on_result=on_result, ask_input=ask_input
        )


@asynccontextmanager
async def open_pty(api: APIClient, ref: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    async with _websocket(api, f"/stream/session/{quote(ref, safe='')}/pty") as ws:
        yield ws


async def upload(api: APIClient, ref: str, files: Sequence[Path], basedir: Path) -> list[str]:
    """Upload *files* (paths under *basedir* keep their relative layout in /home/work)."""
    names = await trio.to_thread.run_sync(_relative_names, files, basedir)
    # httpx streams the parts from these handles; they are closed below.
    handles = await trio.to_thread.run_sync(lambda: [open(f, "rb") for f in files])  # noqa: SIM115
    try:
        parts = [
            ("files", (name, h, "application/octet-stream"))
            for name, h in zip(names, handles, strict=True)
        ]
        resp = await api.send_raw("POST", _session_path(ref, "/upload"), files=parts)
        stored: list[str] = resp.json().get("files", [])
        return stored
    finally:
        for h in handles:
            h.close()


def _relative_names(files: Sequence[Path], basedir: Path) -> list[str]:
    names = []
    for f in files:
        try:
            names.append(str(f.resolve().relative_to(basedir.resolve())))
        except ValueError:
            raise BackendAIError(
                f"file {str(f)!r} is outside the base directory {str(basedir)!r}"
            ) from None
    return names


async def list_files(api: APIClient, ref: str, path: str = ".") -> list[dict[str, Any]]:
    resp = await api.send_raw("GET", _session_path(ref, "/files"), params={"path": path})
    entries: list[dict[str, Any]] = json.loads(resp.json()["files"])
    return entries


async def download(api: APIClient, ref: str, path: str, dest: Path) -> list[str]:
    """Download *path* (a file or a directory) into *dest*; returns the names extracted."""
    query = urlencode({"files": path})
    resp = await api.send_raw("GET", _session_path(ref, "/download") + f"?{query}", stream=True)
    try:
        boundary = resp.headers.get("content-type", "").partition("boundary=")[2].strip('"')
        if not boundary:
            raise BackendAIError(
                f"unexpected download response type {resp.headers.get('content-type')!r}"
            )
        with tempfile.TemporaryDirectory() as tmp:
            tar_path = trio.Path(tmp) / "part.tar"
            await _first_part_to_file(resp.aiter_bytes(), boundary.encode(), tar_path)
            return await trio.to_thread.run_sync(_extract, Path(tar_path), dest)
    finally:
        await resp.aclose()


async def _first_part_to_file(
    chunks: AsyncIterator[bytes], boundary: bytes, out: trio.Path
) -> None:
    """Stream the first part of a multipart body into *out* (bounded memory)."""
    delim = b"\r\n--" + boundary
    buf = b""
    in_body = False
    async with await out.open("wb") as f:
        async for chunk in chunks:
            buf += chunk
            if not in_body:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                buf, in_body = buf[end + 4 :], True
            stop = buf.find(delim)
            if stop >= 0:
                await f.write(buf[:stop])
                return
            keep = len(delim)
            await f.write(buf[:-keep])
            buf = buf[-keep:]
    raise BackendAIError("the download ended before its part was complete")


def _extract(tar_path: Path, dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
        return tar.getnames()
