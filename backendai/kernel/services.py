"""Apps served from the kernel (Jupyter, a web app, sshd): started on request, on a given port.

Op ``start-service`` ``{name, command, port, env, timeout}``: *command* is a
list of arguments or a shell string, in which ``{port}`` is replaced by the
port.  The reply ``{"op": "service-started", name, port, pid, already}``
comes once the port accepts connections on 127.0.0.1; asking again for a
service that still runs returns it (``already``: true).  Errors:
``bad-request`` (a malformed request), ``unavailable`` (the app exited, or
did not listen within *timeout* seconds; the message carries its last output).
The app's output goes to ``/tmp/backendai-service-<name>.log``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from .proctools import signal_group
from .wire import Connection, error

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_POLL = 0.1


class Services:
    def __init__(self, workdir: str, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.running: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self._lock = threading.Lock()

    def _parse(self, request: dict[str, Any]) -> tuple[str, list[str], int, dict[str, str], float]:
        name, command, port = request.get("name"), request.get("command"), request.get("port")
        env, timeout = request.get("env") or {}, request.get("timeout", 60)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name: invalid value {name!r}; expected a short app name")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port: invalid value {port!r}; expected 1-65535")
        if isinstance(command, str) and command:
            argv = ["/bin/sh", "-c", command.replace("{port}", str(port))]
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            argv = [a.replace("{port}", str(port)) for a in command]
        else:
            raise ValueError(
                f"command: invalid value {command!r}; expected a string or a list of strings"
            )
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ValueError(f"env: invalid value {env!r}; expected an object of strings")
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
            raise ValueError(f"timeout: invalid value {timeout!r}; expected 0-600 seconds")
        return name, argv, port, env, float(timeout)

    def op_start(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        try:
            name, argv, port, env, timeout = self._parse(request)
        except ValueError as e:
            return error("bad-request", f"start-service: {e}")
        with self._lock:
            found = self.running.get(name)
            if found is not None and found[0].poll() is None:
                proc, port = found
                return {
                    "op": "service-started",
                    "name": name,
                    "port": port,
                    "pid": proc.pid,
                    "already": True,
                }
            log_path = f"/tmp/backendai-service-{name}.log"
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    argv,
                    cwd=self.workdir,
                    env={**self.env, **env, "PORT": str(port)},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.running[name] = (proc, port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return error("unavailable", f"app {name!r} exited with {proc.returncode} before it "
                             f"listened on port {port}; its last output:\n{_tail(log_path)}")  # fmt: skip
            if _accepts(port):
                return {
                    "op": "service-started",
                    "name": name,
                    "port": port,
                    "pid": proc.pid,
                    "already": False,
                }
            time.sleep(_POLL)
        return error("unavailable", f"app {name!r} did not listen on port {port} within {timeout:g} s; "
                     f"its last output:\n{_tail(log_path)}")  # fmt: skip

    def shutdown(self) -> None:
        with self._lock:
            for proc, _ in self.running.values():
                if proc.poll() is None:
                    signal_group(proc.pid, signal.SIGTERM)
            self.running.clear()


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no output)"
