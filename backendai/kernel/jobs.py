"""What a run executes (:class:`Job`), and the plumbing jobs share with the run loop.

A job exposes its output pipes (:class:`OutputPipe`, read by the run loop) and an
:class:`EventQueue` that other threads (a child's control messages, a process
that exited) fill and the run loop polls.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
from collections import deque
from typing import Any

READ_CHUNK = 256 * 1024


class OutputPipe:
    """The read end of a child's stdout or stderr, decoded as UTF-8 as it arrives."""

    def __init__(self, fd: int, name: str) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.name = name
        self.eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def read(self, limit: int = READ_CHUNK) -> str:
        """What is there now ("" when nothing is); at EOF, sets ``eof``."""
        if self.eof:
            return ""
        try:
            data = os.read(self.fd, limit)
        except BlockingIOError:
            return ""
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return str(self._decoder.decode(b"", True))
        return str(self._decoder.decode(data))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.eof = True


class EventQueue:
    """Events from other threads (a child's control messages, exits), with a pollable fd."""

    def __init__(self) -> None:
        self._items: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    def push(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(event)
            if self._w >= 0:
                with contextlib.suppress(BlockingIOError):  # a wake-up is pending already
                    os.write(self._w, b"!")

    def drain(self) -> list[dict[str, Any]]:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def close(self) -> None:
        with self._lock:
            for fd in (self._r, self._w):
                os.close(fd)
            self._r = self._w = -1


class Job:
    """What a run executes.  Events the run loop acts on (from :meth:`handle`)::

    {"op": "console", "items": [[type, data], ...]}
    {"op": "input-request", "prompt": str, "is_password": bool}
    {"op": "step", "status": "clean-finished" | "build-finished", "exit_code": int}
    {"op": "done", "exit_code": int}
    """

    def __init__(self) -> None:
        self.pipes: list[OutputPipe] = []
        self.queue = EventQueue()

    def start(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def handle(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def send_input(self, data: str | None) -> None:
        raise NotImplementedError

    def interrupt(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def reap_strays(self) -> None:
        """Kill what a stopped run left running (called after a timeout or a detach)."""

    def close(self) -> None:
        self.queue.close()
