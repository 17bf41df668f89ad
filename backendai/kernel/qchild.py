"""Query mode, the interpreter's side: the child process that runs the cells.

Started by the runner as ``python3 -u runner.py --query-child FD``.  Cells run
in one namespace (a ``__main__`` module), so state persists across runs.  The
main thread runs cells; a control thread reads the runner's messages (``exec``
is queued for the main thread, ``input`` answers a pending ``input()``,
``complete`` is answered at once from the namespace).

Like a terminal's Ctrl-C, SIGINT raises KeyboardInterrupt, but only while a
cell runs; a value left by a cell's last expression is printed (its ``repr``),
as in an interactive session.  ``input()``, ``getpass.getpass()`` and
``sys.stdin`` ask the client through the runner.  User code gets rich output
from ``import backendai_kernel`` (:mod:`.userapi`).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import getpass
import linecache
import os
import platform
import queue
import re
import rlcompleter
import signal
import socket
import sys
import threading
import traceback
import types
from typing import Any

from . import userapi
from .proctools import prefer_for_oom
from .wire import Connection, ProtocolError

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")
MAX_COMPLETIONS = 200
ACK_TIMEOUT = 10.0


class InputStream:
    """``sys.stdin`` for cells: each line is asked for through the runner."""

    def __init__(self, child: Child) -> None:
        self._child = child

    def readline(self, size: int = -1) -> str:
        return self._child.request_input("", False) + "\n"

    def read(self, size: int = -1) -> str:
        return self.readline()

    def isatty(self) -> bool:
        return False

    def __iter__(self) -> InputStream:
        return self

    def __next__(self) -> str:
        return self.readline()


class Child:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()
        self.in_cell = False
        self.cells = 0
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.answers: queue.Queue[str | None] = queue.Queue()
        self.acks: queue.Queue[None] = queue.Queue()
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        self.ns = main.__dict__

    def serve(self) -> int:
        prefer_for_oom()  # before any user code: the runner must outlive a memory hog
        sys.path.insert(0, "")
        builtins.input = lambda prompt="": self.request_input(str(prompt), False)
        getpass.getpass = lambda prompt="Password: ", stream=None: self.request_input(prompt, True)
        sys.stdin = InputStream(self)  # type: ignore[assignment,unused-ignore]
        userapi.connect(self.emit)
        sys.modules["backendai_kernel"] = userapi
        signal.signal(signal.SIGINT, self.on_sigint)
        threading.Thread(target=self.read_control, name="control", daemon=True).start()
        self.conn.send({"op": "ready", "pid": self.pid, "python": platform.python_version()})
        while True:
            job = self.jobs.get()
            if job is None:
                return 0
            exit_code = self.run_cell(str(job.get("code") or ""))
            self.flush()
            self.conn.send({"op": "done", "exit_code": exit_code})

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.in_cell:
            raise KeyboardInterrupt

    def flush(self) -> None:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass

    def emit(self, items: list[list[Any]]) -> None:
        """Rich output, in order with stdout: the runner acks once it read what came before."""
        self.flush()
        self.conn.send({"op": "console", "items": items, "ack": True})
        with contextlib.suppress(queue.Empty):
            self.acks.get(timeout=ACK_TIMEOUT)

    def request_input(self, prompt: str, password: bool) -> str:
        if prompt:
            sys.stdout.write(prompt)
        self.flush()
        self.conn.send({"op": "input-request", "prompt": prompt, "is_password": password})
        answer = self.answers.get()
        if answer is None:
            raise EOFError("no input: the run was interrupted or its client went away")
        return answer

    def run_cell(self, source: str) -> int:
        self.cells += 1
        filename = f"<cell {self.cells}>"
        while not self.answers.empty():  # stale answers of an earlier run
            self.answers.get_nowait()
        try:
            tree = ast.parse(source, filename, "exec")
        except (SyntaxError, ValueError) as e:
            traceback.print_exception(type(e), e, None)
            return 1
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body[-1].value)
            tree.body.pop()
        try:
            try:
                self.in_cell = True
                exec(compile(tree, filename, "exec"), self.ns)
                if last is not None:
                    value = eval(compile(last, filename, "eval"), self.ns)
                    if value is not None:
                        sys.displayhook(value)
            finally:
                self.in_cell = False
                if os.getpid() != self.pid:
                    os._exit(0)  # a fork made by the cell fell out of it: it must not serve
        except SystemExit as e:
            return self.system_exit(e)
        except BaseException as e:
            self.in_cell = False
            self.print_exception(e)
            return 130 if isinstance(e, KeyboardInterrupt) else 1
        return 0

    @staticmethod
    def print_exception(e: BaseException) -> None:
        """The traceback of a cell's exception, without the frames of this module."""
        te = traceback.TracebackException(type(e), e, e.__traceback__)
        te.stack = traceback.StackSummary.from_list(
            [frame for frame in te.stack if frame.filename != __file__]
        )
        sys.stderr.write("".join(te.format()))

    @staticmethod
    def system_exit(e: SystemExit) -> int:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1

    def read_control(self) -> None:
        while True:
            try:
                message = self.conn.receive()
            except (OSError, ProtocolError):
                message = None
            if message is None:
                os._exit(0)  # the runner is gone
            op = message.get("op")
            if op == "exec":
                self.jobs.put(message)
            elif op == "input":
                data = message.get("data")
                self.answers.put(data if isinstance(data, str) else None)
            elif op == "ack":
                self.acks.put(None)
            elif op == "complete":
                items = self.completions(message.get("code"), message.get("options"))
                self.conn.send({"op": "completions", "id": message.get("id"), "items": items})

    def completions(self, code: Any, options: Any) -> list[str]:
        text = code if isinstance(code, str) else ""
        options = options if isinstance(options, dict) else {}
        line, row, col = options.get("line"), options.get("row"), options.get("col")
        if isinstance(line, str) and line:
            text = line[:col] if isinstance(col, int) else line
        elif isinstance(row, int) and isinstance(col, int):
            lines = text.split("\n")
            text = lines[row][:col] if 0 <= row < len(lines) else ""
        match = _TOKEN.search(text)
        if match is None:
            return []
        completer = rlcompleter.Completer(self.ns)
        found: list[str] = []
        try:
            for state in range(MAX_COMPLETIONS * 2):
                candidate = completer.complete(match.group(0), state)
                if candidate is None or len(found) >= MAX_COMPLETIONS:
                    break
                candidate = candidate.rstrip("()")
                if candidate not in found:
                    found.append(candidate)
        except Exception:  # user objects may raise from __getattr__ or __dir__
            pass
        return found


def main(ctl_fd: int) -> int:
    return Child(Connection(socket.socket(fileno=ctl_fd))).serve()
