"""Op ``connect``: a TCP connection to an app in the kernel, carried over the runner's socket.

A kernel without a network the host can reach (Docker's ``none``, or a bridge
on another host) still serves its apps: the agent asks for ``{"op": "connect",
"port": P}``; the runner connects to ``127.0.0.1:P`` inside the kernel, replies
``{"op": "connected", "port": P}``, and from then on the connection carries the
app's bytes raw, both ways.  The end of one direction is passed on as a
half-close without cutting the other; the connection closes when both have
ended.  Errors: ``bad-request`` (no valid port), ``unavailable`` (nothing
accepts connections on that port).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from .wire import Connection, error

CONNECT_TIMEOUT = 5.0
CHUNK = 65536


def op_connect(conn: Connection, request: dict[str, Any]) -> dict[str, Any] | None:
    port = request.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return error("bad-request", f"connect: invalid port {port!r}; expected 1-65535")
    try:
        app = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    except OSError as e:
        return error(
            "unavailable",
            f"nothing accepts connections on port {port} in the kernel ({e.strerror or e})",
        )
    app.settimeout(None)
    try:
        conn.send({"op": "connected", "port": port})
        relay(conn.sock, app)
    finally:
        app.close()
    return None


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both directions have ended (one thread each way)."""
    other = threading.Thread(target=_pump, args=(b, a), name="tunnel", daemon=True)
    try:
        other.start()
    except RuntimeError:  # no thread left (the kernel's pids limit): give up on it
        return
    _pump(a, b)
    other.join()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:  # a side broke: end both directions
        with contextlib.suppress(OSError):
            src.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
