"""The agent's side of the kernel runner's protocol: framed JSON over ``<ipc>/runner.sock``.

Runner error replies become our errors here, by their stable slug::

    bad-request, bad-path, unsupported -> InvalidAPIParameters (400)
    not-found             -> NotFound (404)
    busy                  -> Conflict (409)
    anything else         -> KernelError (500)

A runner that cannot be reached is a :class:`~backendai.errors.KernelError`
naming the kernel and the socket.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import trio

from ..errors import Conflict, InvalidAPIParameters, KernelError, NotFound

__all__ = ["RunnerConnection", "check_reply", "connect_runner", "runner_request"]

MAX_FRAME = 16 * 1024 * 1024
# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
SOCKET_NAME = "runner.sock"
_HEADER = struct.Struct(">I")
_ERRORS: dict[str, type[Exception]] = {
    "bad-request": InvalidAPIParameters,
    "bad-path": InvalidAPIParameters,
    "not-found": NotFound,
    "busy": Conflict,
    "unsupported": InvalidAPIParameters,
}


def check_reply(reply: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """*reply*, unless it is an error (raised as ours) or missing (the runner hung up)."""
    if reply is None:
        raise KernelError(f"{what}: the kernel runner closed the connection without a reply")
    if reply.get("op") == "error":
        cls = _ERRORS.get(str(reply.get("error")), KernelError)
        raise cls(f"{what}: {reply.get('message') or reply.get('error')}")
    return reply


class RunnerConnection:
    """One connection to a kernel runner."""

    def __init__(self, stream: trio.SocketStream, kernel_id: str) -> None:
        self.stream = stream
        self.kernel_id = kernel_id
        self._buf = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        async with self._send_lock:
            try:
                await self.stream.send_all(_HEADER.pack(len(data)) + data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise KernelError(
                    f"kernel {self.kernel_id!r}: the runner connection broke while sending"
                ) from e

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the runner closed the connection."""
        try:
            while True:
                message = self._take()
                if message is not None:
                    return message
                if not await self._fill():
                    return None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None

    async def receive_batch(self) -> list[dict[str, Any]] | None:
        """The next message and every whole one already received after it; None when the
        runner closed the connection before another."""
        first = await self.receive()
        if first is None:
            return None
        batch = [first]
        while (message := self._take()) is not None:
            batch.append(message)
        return batch

    def _take(self) -> dict[str, Any] | None:
        """The first whole frame in the buffer, decoded and removed; None if there is none."""
        if len(self._buf) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buf)
        if length > MAX_FRAME:
            raise KernelError(
                f"kernel {self.kernel_id!r}: runner frame of {length} bytes exceeds {MAX_FRAME}"
            )
        if len(self._buf) < _HEADER.size + length:
            return None
        body = bytes(self._buf[_HEADER.size : _HEADER.size + length])
        del self._buf[: _HEADER.size + length]
        try:
            message = json.loads(body)
        except ValueError as e:
            raise KernelError(f"kernel {self.kernel_id!r}: runner sent a bad frame: {e}") from e
        if not isinstance(message, dict):
            raise KernelError(
                f"kernel {self.kernel_id!r}: runner sent a frame that is not an object"
            )
        return message

    def take_buffered(self) -> bytes:
        """What was received after the last whole frame (once a connection turns raw)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    async def _fill(self) -> bool:
        chunk = await self.stream.receive_some(256 * 1024)
        if not chunk:
            return False
        self._buf += chunk
        return True

    async def request(self, message: dict[str, Any], what: str) -> dict[str, Any]:
        await self.send(message)
        return check_reply(await self.receive(), what)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


async def connect_runner(ipc_dir: Path, kernel_id: str) -> RunnerConnection:
    path = ipc_dir / SOCKET_NAME
    dir_fd = None
    try:
        target = str(path)
        if len(target.encode()) > _MAX_SOCKET_PATH:
            # A unix socket path is limited to 107 bytes; reach a deep one through the
            # directory's file descriptor instead (/proc/self/fd/N/runner.sock).
            dir_fd = os.open(ipc_dir, os.O_RDONLY | os.O_DIRECTORY)
            target = f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}"
        stream = await trio.open_unix_socket(target)
    except OSError as e:
        raise KernelError(
            f"kernel {kernel_id!r} does not answer on {path} ({e.strerror or e}): "
            "it is not running, still starting, or runs no code (dummy backend)"
        ) from e
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return RunnerConnection(stream, kernel_id)


async def runner_request(
    ipc_dir: Path, kernel_id: str, message: dict[str, Any], what: str
) -> dict[str, Any]:
    """One request and its reply on a connection of its own."""
    conn = await connect_runner(ipc_dir, kernel_id)
    try:
        return await conn.request(message, what)
    finally:
        await conn.aclose()
