"""Framed JSON, the runner's only wire format (standard library, Python 3.8+).

A frame is a 4-byte big-endian length, then that many bytes of a UTF-8 JSON
object with an ``"op"`` key.  :class:`Connection` is the blocking, thread-safe
side (request handlers, the query child); :class:`FrameDecoder` and
:class:`Outbox` are the non-blocking side a run loop uses, so that a client
that stops reading stalls the run instead of growing memory.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return HEADER.pack(len(data)) + data


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except ValueError as e:
        raise ProtocolError(f"frame is not UTF-8 JSON: {e}") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is JSON but not an object")
    return message


def error(slug: str, message: str, **extra: Any) -> dict[str, Any]:
    """An error reply: ``slug`` is stable (the agent maps it to an HTTP status)."""
    reply: dict[str, Any] = {"op": "error", "error": slug, "message": message}
    reply.update(extra)
    return reply


class Connection:
    """One peer: framed JSON messages over a connected socket (blocking)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        # Run when the connection closes (e.g. remove a half-written upload).
        self.on_close: list[Callable[[], None]] = []
        # Per-connection state of stateful ops (an upload in progress).
        self.state: dict[str, Any] = {}

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                if buf:
                    raise ProtocolError("connection closed in the middle of a frame")
                return None
            buf += chunk
        return bytes(buf)

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the peer closed the connection."""
        header = self._recv_exact(HEADER.size)
        if header is None:
            return None
        (length,) = HEADER.unpack(header)
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {MAX_FRAME}")
        body = self._recv_exact(length)
        if body is None:
            raise ProtocolError("connection closed in the middle of a frame")
        return decode_body(body)

    def send(self, message: dict[str, Any]) -> None:
        data = encode(message)
        with self._send_lock:
            self.sock.sendall(data)

    def close(self) -> None:
        callbacks, self.on_close = self.on_close, []
        for callback in callbacks:
            with contextlib.suppress(OSError):
                callback()
        self.sock.close()


class FrameDecoder:
    """Incremental decoding of frames from bytes as they arrive."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {MAX_FRAME}")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            out.append(decode_body(bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return out


class Outbox:
    """Frames waiting to go out on a non-blocking socket; ``full`` is the backpressure signal."""

    def __init__(self, sock: socket.socket, high_water: int) -> None:
        self.sock = sock
        self.high_water = high_water
        self._buf = bytearray()
        self.broken = False

    def put(self, message: dict[str, Any]) -> None:
        if not self.broken:
            self._buf += encode(message)

    @property
    def pending(self) -> bool:
        return bool(self._buf) and not self.broken

    @property
    def full(self) -> bool:
        return len(self._buf) >= self.high_water

    def write_some(self) -> None:
        """Send what the socket takes now; a peer that is gone marks the outbox broken."""
        try:
            sent = self.sock.send(self._buf[: 1024 * 1024])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.broken = True
            self._buf.clear()
            return
        del self._buf[:sent]
