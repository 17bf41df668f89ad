"""The backendai kernel runner: the agent's peer inside every kernel.

Standard library only, Python 3.8+ (it runs on whatever ``python3`` the kernel
image has; it never imports the rest of backendai).  Started as::

    python3 /opt/backendai/kernel/runner.py

with ``BACKENDAI_IPC_DIR`` (default ``/opt/backendai/ipc``) naming the
directory the agent shares with the kernel.  The runner listens on
``<ipc>/runner.sock``; the socket is bound under a temporary name and renamed
into place, so the agent sees it only once it accepts connections.

Wire format, both directions: a 4-byte big-endian length, then that many bytes
of a UTF-8 JSON object with an ``"op"`` key.  Each request gets one reply::

    {"op": "ping"}    -> {"op": "pong", "pid": 7, "python": "3.11.2"}
    {"op": "status"}  -> {"op": "status", "pid": ..., "uptime": ..., ...}
    anything else     -> {"op": "error", "error": "unknown-op", "message": ...}

Each connection is served by its own thread; a handler is a function taking
the connection and the request and returning the reply (``HANDLERS``), so the
execute modes (query, batch, input, interrupt) plug in as more handlers.

``BACKENDAI_STARTUP_COMMAND``, if set, runs once at start through
``/bin/sh -c`` with the runner's stdout and stderr.  SIGTERM or SIGINT: the
runner removes its socket and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

DEFAULT_IPC_DIR = "/opt/backendai/ipc"
SOCKET_NAME = "runner.sock"
MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


class Connection:
    """One client: framed JSON messages over a connected unix socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

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
        header = self._recv_exact(_HEADER.size)
        if header is None:
            return None
        (length,) = _HEADER.unpack(header)
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {MAX_FRAME}")
        body = self._recv_exact(length) or b""
        try:
            message = json.loads(body.decode("utf-8"))
        except ValueError as e:
            raise ProtocolError(f"frame is not UTF-8 JSON: {e}") from None
        if not isinstance(message, dict):
            raise ProtocolError("frame is JSON but not an object")
        return message

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode("utf-8")
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(data)) + data)


class Runner:
    """Process-wide state shared by every connection."""

    def __init__(self, ipc_dir: str) -> None:
        self.ipc_dir = ipc_dir
        self.socket_path = os.path.join(ipc_dir, SOCKET_NAME)
        self.started_at = time.time()
        self.startup: subprocess.Popen[bytes] | None = None
        self.connections = 0
        self._lock = threading.Lock()

    # -- handlers: (connection, request) -> reply -------------------------------

    def op_ping(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        return {"op": "pong", "pid": os.getpid(), "python": platform.python_version()}

    def op_status(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        startup = None
        if self.startup is not None:
            startup = {"pid": self.startup.pid, "exit_code": self.startup.poll()}
        return {
            "op": "status",
            "pid": os.getpid(),
            "uid": os.getuid(),
            "python": platform.python_version(),
            "uptime": time.time() - self.started_at,
            "kernel_id": os.environ.get("BACKENDAI_KERNEL_ID", ""),
            "session_id": os.environ.get("BACKENDAI_SESSION_ID", ""),
            "connections": self.connections,
            "startup_command": startup,
        }

    # -- plumbing ---------------------------------------------------------------

    def handlers(self) -> dict[str, Callable[[Connection, dict[str, Any]], dict[str, Any]]]:
        return {"ping": self.op_ping, "status": self.op_status}

    def serve_connection(self, sock: socket.socket) -> None:
        conn = Connection(sock)
        handlers = self.handlers()
        with self._lock:
            self.connections += 1
        try:
            while True:
                try:
                    request = conn.receive()
                except ProtocolError as e:
                    conn.send({"op": "error", "error": "bad-frame", "message": str(e)})
                    return
                if request is None:
                    return
                op = request.get("op")
                handler = handlers.get(op) if isinstance(op, str) else None
                if handler is None:
                    known = ", ".join(sorted(handlers))
                    message = f"unknown op {op!r}; known ops: {known}"
                    conn.send({"op": "error", "error": "unknown-op", "message": message})
                    continue
                conn.send(handler(conn, request))
        except OSError:
            pass  # the peer went away mid-reply
        finally:
            with self._lock:
                self.connections -= 1
            sock.close()

    def run_startup_command(self, command: str) -> None:
        sys.stdout.flush()
        self.startup = subprocess.Popen(["/bin/sh", "-c", command])
        # Reap it when it ends (we may be PID 1 in a container).
        threading.Thread(target=self.startup.wait, name="startup-command", daemon=True).start()

    def listen(self) -> socket.socket:
        """Bind under a temporary name, then rename into place (atomic for the agent)."""
        # The temporary name is shorter than SOCKET_NAME: one length check covers both.
        tmp_path = os.path.join(self.ipc_dir, f".r{os.getpid() % 100000}")
        if len(self.socket_path.encode()) > 107:
            raise SystemExit(f"socket path too long for AF_UNIX: {self.socket_path}")
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(tmp_path)
        server.listen(64)
        os.rename(tmp_path, self.socket_path)
        return server

    def serve(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, frame: None)
        server = self.listen()
        print(f"backendai kernel runner ready on {self.socket_path}", flush=True)
        command = os.environ.get("BACKENDAI_STARTUP_COMMAND")
        if command:
            self.run_startup_command(command)
        selector = selectors.DefaultSelector()
        selector.register(server, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in selector.select():
                    if key.fileobj is server:
                        client, _ = server.accept()
                        threading.Thread(
                            target=self.serve_connection, args=(client,), daemon=True
                        ).start()
                    elif any(s in (signal.SIGTERM, signal.SIGINT) for s in os.read(wake_r, 64)):
                        print("backendai kernel runner stopping on signal", flush=True)
                        return 0
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)


def main() -> int:
    ipc_dir = os.environ.get("BACKENDAI_IPC_DIR") or DEFAULT_IPC_DIR
    return Runner(ipc_dir).serve()


if __name__ == "__main__":
    sys.exit(main())
