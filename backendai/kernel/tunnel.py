"""Op ``connect``: a TCP connection to an app in the kernel, carried over the runner's socket.

A kernel without a network the host can reach (Docker's ``none``, or a bridge
on another host) still serves its apps: the agent asks for ``{"op": "connect",
"port": P}``; the runner connects to ``127.0.0.1:P`` inside the kernel, replies
``{"op": "connected", "port": P}``, and from then on the connection carries the
app's bytes raw, both ways.  The end of one direction is passed on as a
half-close without cutting the other; the connection closes when both have
ended, when either side breaks, or when a half-closed connection has been idle
for ``HALF_OPEN_IDLE`` seconds.  One thread per tunnel (the connection's own),
at most ``MAX_TUNNELS`` at once, each holding at most ``CHUNK`` bytes per
direction.  Errors: ``bad-request`` (no valid port), ``unavailable`` (nothing
accepts connections on that port, or too many tunnels).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any

from .wire import Connection, error

CONNECT_TIMEOUT = 5.0
CHUNK = 65536
MAX_TUNNELS = 256
HALF_OPEN_IDLE = 600.0


class Tunnels:
    def __init__(self, limit: int = MAX_TUNNELS) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def op_connect(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any] | None:
        port = request.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            return error("bad-request", f"connect: invalid port {port!r}; expected 1-65535")
        with self._lock:
            if self.active >= self.limit:
                return error(
                    "unavailable",
                    f"connect: {self.active} connections to apps are open, the most the "
                    "kernel runner carries at once",
                )
            self.active += 1
        try:
            try:
                app = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
            except OSError as e:
                return error(
                    "unavailable",
                    f"nothing accepts connections on port {port} in the kernel ({e.strerror or e})",
                )
            try:
                conn.send({"op": "connected", "port": port})
                relay(conn.sock, app)
            finally:
                app.close()
            return None
        finally:
            with self._lock:
                self.active -= 1


def relay(a: socket.socket, b: socket.socket, idle_limit: float = HALF_OPEN_IDLE) -> None:
    """Copy bytes both ways until both directions have ended (see the module docstring)."""
    for s in (a, b):
        s.setblocking(False)
    pending = {a: bytearray(), b: bytearray()}  # read from the key, to go to the other
    ended = {a: False, b: False}  # the key's reading direction reached its end
    shut = {a: False, b: False}  # writing to the key was shut down
    other = {a: b, b: a}
    last = time.monotonic()
    try:
        while not (ended[a] and ended[b] and not pending[a] and not pending[b]):
            for s in (a, b):
                if ended[s] and not pending[s] and not shut[other[s]]:
                    other[s].shutdown(socket.SHUT_WR)  # pass the half-close on
                    shut[other[s]] = True
            poller = select.poll()
            for s in (a, b):
                mask = 0
                if not ended[s] and len(pending[s]) < CHUNK:
                    mask |= select.POLLIN
                if pending[other[s]]:
                    mask |= select.POLLOUT
                if mask:
                    poller.register(s, mask)
            half_open = ended[a] or ended[b]
            timeout = None
            if half_open:
                timeout = max(0, int((last + idle_limit - time.monotonic()) * 1000))
            events = poller.poll(timeout)
            if not events:
                return  # idle too long with one direction ended
            last = time.monotonic()
            for fd, mask in events:
                s = a if fd == a.fileno() else b
                if mask & (select.POLLIN | select.POLLHUP | select.POLLERR) and not ended[s]:
                    try:
                        data = s.recv(CHUNK - len(pending[s]))
                    except (BlockingIOError, InterruptedError):
                        data = None
                    if data == b"":
                        ended[s] = True
                    elif data:
                        pending[s] += data
                if mask & select.POLLOUT and pending[other[s]]:
                    try:
                        sent = s.send(pending[other[s]])
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    del pending[other[s]][:sent]
    except OSError:
        pass  # a side broke: the tunnel is over
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
