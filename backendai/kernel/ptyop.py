"""A terminal in the kernel: a real pty running a shell, on its own connection.

The client sends ``{"op": "pty", "rows": R, "cols": C, "command": [...]}``
(command optional: bash if the image has it, else sh), then any number of
``{"op": "in", "data": <base64>}`` and ``{"op": "resize", "rows", "cols"}``.
The runner answers ``{"op": "pty-started", "pid"}``, then sends
``{"op": "out", "data": <base64>}`` as the terminal writes and
``{"op": "exit", "code"}`` when the shell ends.

A client that stops reading stops the runner reading the terminal, so the
shell blocks on output.  A client that goes away hangs up the terminal
(SIGHUP to the shell's session; SIGKILL if it has not ended a moment later).
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import signal
import struct
import termios
import threading
import time
from typing import Any

from .proctools import exit_code, prefer_for_oom, signal_group
from .wire import Connection, ProtocolError, error

HANGUP_GRACE = 2.0
READ_CHUNK = 64 * 1024


def _size(value: Any, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10000:
        raise ValueError(f"invalid terminal size {value!r}; expected an integer from 1 to 10000")
    return value


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def default_shell() -> list[str]:
    for shell in ("/bin/bash", "/bin/sh"):
        if os.access(shell, os.X_OK):
            return [shell]
    return ["sh"]


def serve_pty(conn: Connection, request: dict[str, Any], workdir: str, env: dict[str, str]) -> None:
    try:
        rows, cols = _size(request.get("rows"), 24), _size(request.get("cols"), 80)
    except ValueError as e:
        conn.send(error("bad-request", str(e)))
        return
    command = request.get("command") or default_shell()
    if not isinstance(command, list) or not all(isinstance(a, str) and a for a in command):
        conn.send(error("bad-request", f"pty: invalid command {command!r}; expected argv strings"))
        return
    executable = shutil.which(command[0], path=env.get("PATH")) or command[0]
    env = dict(env, TERM=env.get("TERM") or "xterm-256color")
    try:
        pid, master = os.forkpty()
    except OSError as e:
        conn.send(error("io-error", f"pty: cannot start a terminal: {e}"))
        return
    if pid == 0:  # the child: nothing but exec (the runner has other threads)
        try:
            prefer_for_oom()
            os.chdir(workdir)
            os.execve(executable, command, env)
        finally:
            os._exit(127)
    set_size(master, rows, cols)
    _Terminal(conn, pid, master).serve()


class _Terminal:
    def __init__(self, conn: Connection, pid: int, master: int) -> None:
        self.conn, self.pid, self.master = conn, pid, master
        self.status: int | None = None
        self._reaped = threading.Event()

    def serve(self) -> None:
        self.conn.send({"op": "pty-started", "pid": self.pid})
        reader = threading.Thread(target=self.pump_output, name="pty-out", daemon=True)
        reader.start()
        try:
            self.pump_input()
        finally:
            if not self._reaped.is_set():
                self.hang_up()
            reader.join(HANGUP_GRACE)
            os.close(self.master)

    def pump_input(self) -> None:
        while not self._reaped.is_set():
            try:
                message = self.conn.receive()
            except (OSError, ProtocolError):
                return
            if message is None:
                return
            op = message.get("op")
            try:
                if op == "in":
                    data = base64.b64decode(message.get("data") or "", validate=True)
                    while data:
                        data = data[os.write(self.master, data) :]
                elif op == "resize":
                    set_size(
                        self.master, _size(message.get("rows"), 24), _size(message.get("cols"), 80)
                    )
                else:
                    self.conn.send(
                        error("unknown-op", f"pty: unknown op {op!r}; expected 'in' or 'resize'")
                    )
            except (ValueError, TypeError) as e:
                self.conn.send(error("bad-request", f"pty {op}: {e}"))
            except OSError:
                return  # the terminal is gone; the reader reports the exit

    def pump_output(self) -> None:
        while True:
            try:
                data = os.read(self.master, READ_CHUNK)
            except OSError:
                data = b""  # EIO: every process of the terminal closed it
            if not data:
                break
            try:
                self.conn.send({"op": "out", "data": base64.b64encode(data).decode("ascii")})
            except OSError:
                break
        _, status = os.waitpid(self.pid, 0)
        self.status = exit_code(
            -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        )
        self._reaped.set()
        try:
            self.conn.send({"op": "exit", "code": self.status})
            self.conn.sock.shutdown(2)  # wakes pump_input
        except OSError:
            pass

    def hang_up(self) -> None:
        signal_group(self.pid, signal.SIGHUP)
        signal_group(self.pid, signal.SIGCONT)
        deadline = time.monotonic() + HANGUP_GRACE
        while time.monotonic() < deadline:
            if self._reaped.wait(0.05):
                return
        signal_group(self.pid, signal.SIGKILL)
