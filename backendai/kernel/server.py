"""The runner's server: one thread per connection, ops dispatched by name.

Request/reply ops (one reply each; a connection may carry many)::

    ping, status, interrupt, complete, write-file, read-file, list-files,
    start-service (:mod:`.services`)

Ops that take over their connection and close it when done::

    execute   -> console / waiting-input / step frames, then finished
    pty       -> pty-started, out frames, exit
    archive   -> archive-started, data frames, end
    connect   -> connected, then an app's TCP bytes raw both ways (:mod:`.tunnel`)

Errors are ``{"op": "error", "error": slug, "message": ...}``; slugs:
``unknown-op``, ``bad-frame``, ``bad-request``, ``bad-path``, ``not-found``,
``busy`` (a run is in progress), ``io-error``, ``unavailable`` (e.g. no pids left),
``unsupported`` (query mode in an image without Python).

One run at a time per kernel (query or batch): a second ``execute`` while one
is in progress is refused with ``busy``, naming the run in progress.
"""

from __future__ import annotations

import contextlib
import os
import platform
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .batch import BatchError, BatchJob, parse_steps
from .files import FileOps
from .jobs import Job
from .ptyop import serve_pty
from .query import Interpreter, InterpreterError, QueryJob
from .runloop import drive
from .services import Services
from .tunnel import Tunnels
from .wire import Connection, ProtocolError, error

DEFAULT_IPC_DIR = "/opt/backendai/ipc"
DEFAULT_WORK_DIR = "/home/work"
SOCKET_NAME = "runner.sock"
OUTPUT_DIR = ".output"
# Seconds a run killed at shutdown gets to send its last frames.
SHUTDOWN_GRACE = 1.0
# Environment of the runner that its children should not see.
PRIVATE_ENV = ("BACKENDAI_STARTUP_COMMAND", "BACKENDAI_IPC_DIR")

Handler = Callable[[Connection, dict[str, Any]], "dict[str, Any] | None"]


def work_dir() -> str:
    given = os.environ.get("BACKENDAI_WORK_DIR")
    if given:
        return given
    return DEFAULT_WORK_DIR if os.path.isdir(DEFAULT_WORK_DIR) else os.getcwd()


class Runner:
    """Process-wide state shared by every connection."""

    def __init__(self, ipc_dir: str, workdir: str, runner_script: str) -> None:
        self.ipc_dir = ipc_dir
        self.socket_path = os.path.join(ipc_dir, SOCKET_NAME)
        self.workdir = workdir
        self.started_at = time.time()
        self.startup: subprocess.Popen[bytes] | None = None
        self.connections = 0
        self.env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        python = os.environ.get("BACKENDAI_PYTHON") or sys.executable or "python3"
        self.interpreter = Interpreter(python, runner_script, workdir, self.env)
        self.files = FileOps(workdir)
        self.services = Services(workdir, self.env)
        self.tunnels = Tunnels()
        self.run: tuple[str, Job] | None = None
        self._lock = threading.Lock()

    # -- request/reply ops ------------------------------------------------------

    def op_ping(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        return {"op": "pong", "pid": os.getpid(), "python": platform.python_version()}

    def op_status(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        startup = None
        if self.startup is not None:
            startup = {"pid": self.startup.pid, "exit_code": self.startup.poll()}
        run = self.run
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
            "work_dir": self.workdir,
            "run_id": run[0] if run else None,
            "interpreter_pid": self.interpreter.pid,
        }

    def op_interrupt(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        run = self.run
        if run is not None:
            run[1].interrupt()
        return {"op": "interrupted", "run_id": run[0] if run else None}

    def op_complete(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        code, options = request.get("code", ""), request.get("options") or {}
        if not isinstance(code, str) or not isinstance(options, dict):
            return error(
                "bad-request", "complete: expected code (a string) and options (an object)"
            )
        try:
            items = self.interpreter.complete(code, options)
        except InterpreterError as e:
            return error(e.slug, str(e))
        return {"op": "completions", "items": items}

    # -- ops that take over the connection ------------------------------------

    def op_execute(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any] | None:
        run_id, mode = request.get("run_id"), request.get("mode")
        code, options = request.get("code", ""), request.get("options") or {}
        if not isinstance(run_id, str) or not run_id:
            return error("bad-request", f"execute: invalid run_id {run_id!r}; expected a string")
        if not isinstance(code, str) or not isinstance(options, dict):
            return error("bad-request", "execute: expected code (a string) and options (an object)")
        timeout = options.get("exec_timeout", 0) or 0
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
            return error(
                "bad-request", f"options.exec_timeout: invalid value {timeout!r}; expected seconds"
            )
        job: Job
        if mode == "query":
            job = QueryJob(self.interpreter, code)
        elif mode == "batch":
            try:
                job = BatchJob(parse_steps(options), self.workdir, self.env)
            except BatchError as e:
                return error("bad-request", str(e))
        else:
            return error("bad-request", f"execute: invalid mode {mode!r}; expected query or batch")
        with self._lock:
            if self.run is not None:
                job.close()
                return error("busy", f"run {self.run[0]!r} is in progress", run_id=self.run[0])
            self.run = (run_id, job)

        def end() -> None:
            with self._lock:
                self.run = None

        try:
            drive(
                conn.sock,
                run_id,
                job,
                exec_timeout=float(timeout),
                output_dir=self.output_dir,
                on_end=end,
            )
        except InterpreterError as e:
            conn.sock.setblocking(True)
            return error(e.slug, str(e))
        return None

    @property
    def output_dir(self) -> str:
        return os.path.join(self.workdir, OUTPUT_DIR)

    def op_pty(self, conn: Connection, request: dict[str, Any]) -> None:
        serve_pty(conn, request, self.workdir, self.env)

    def op_archive(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any] | None:
        reply = self.files.archive(conn, request)
        if reply.get("op") == "error":
            return reply
        conn.send(reply)
        return None

    # -- plumbing ---------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        return {
            "archive": self.op_archive,
            "complete": self.op_complete,
            "connect": self.tunnels.op_connect,
            "execute": self.op_execute,
            "interrupt": self.op_interrupt,
            "list-files": self.files.list,
            "ping": self.op_ping,
            "pty": self.op_pty,
            "read-file": self.files.read,
            "start-service": self.services.op_start,
            "status": self.op_status,
            "write-file": self.files.write,
        }

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
                    conn.send(error("bad-frame", str(e)))
                    return
                if request is None:
                    return
                op = request.get("op")
                handler = handlers.get(op) if isinstance(op, str) else None
                if handler is None:
                    known = ", ".join(sorted(handlers))
                    conn.send(error("unknown-op", f"unknown op {op!r}; known ops: {known}"))
                    continue
                reply = handler(conn, request)
                if reply is not None:
                    conn.send(reply)
                if op in ("execute", "pty", "archive", "connect") and (
                    reply is None or reply["op"] != "error"
                ):
                    return  # the op used the connection up
        except OSError:
            pass  # the peer went away mid-reply
        finally:
            with self._lock:
                self.connections -= 1
            conn.close()

    def run_startup_command(self, command: str) -> None:
        sys.stdout.flush()
        self.startup = subprocess.Popen(["/bin/sh", "-c", command], env=self.env)
        # Reap it when it ends.
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

    def accept(self, server: socket.socket) -> None:
        client, _ = server.accept()
        thread = threading.Thread(target=self.serve_connection, args=(client,), daemon=True)
        try:
            thread.start()
        except RuntimeError as e:  # no thread left: the kernel's pids limit is reached
            print(f"backendai kernel runner: refusing a connection: {e}", flush=True)
            client.close()

    def serve(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, frame: None)
        try:
            os.makedirs(self.workdir, exist_ok=True)
        except OSError as e:
            print(f"backendai kernel runner: no work directory {self.workdir}: {e}", flush=True)
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
                        self.accept(server)
                    elif any(s in (signal.SIGTERM, signal.SIGINT) for s in os.read(wake_r, 64)):
                        print("backendai kernel runner stopping on signal", flush=True)
                        return 0
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
            self.shutdown()

    def shutdown(self) -> None:
        """Stop what runs on the kernel's behalf (they are in process groups of their own).

        A run in progress is told why it ends, and gets a moment to send its last frames.
        """
        run = self.run
        if run is not None:
            note = f"\n[the kernel is stopping: run {run[0]!r} is killed]\n"
            run[1].queue.push({"op": "console", "items": [["stderr", note]]})
            run[1].kill()
        self.interpreter.shutdown()
        self.services.shutdown()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self.run is not None and time.monotonic() < deadline:
            time.sleep(0.02)


def main(runner_script: str) -> int:
    ipc_dir = os.environ.get("BACKENDAI_IPC_DIR") or DEFAULT_IPC_DIR
    return Runner(ipc_dir, work_dir(), runner_script).serve()
