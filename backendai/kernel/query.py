"""Query mode, the runner's side: one persistent Python interpreter in a child process.

The child (:mod:`.qchild`) runs in its own session and process group, as the
runner's user, in the work directory; its stdout and stderr are pipes the run
loop reads, and a socket pair carries framed control messages (``exec``,
``input``, ``complete`` to it; ``console``, ``input-request``, ``done``,
``completions`` from it).  A reader thread routes what the child sends: replies
to completions by id, everything else to the current run's event queue.

The interpreter starts on first use.  If it dies (killed after an exec timeout,
the OOM killer), the run in progress ends and the next run starts a fresh one,
saying so on the console.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import threading
from typing import Any

from .jobs import EventQueue, Job, OutputPipe
from .proctools import death_note, kill_group, oom_kills, signal_group
from .wire import Connection, ProtocolError

COMPLETE_TIMEOUT = 5.0


class InterpreterError(Exception):
    """The interpreter cannot be started: ``unsupported`` (no Python in the image) or
    ``unavailable`` (no pids left, ...)."""

    def __init__(self, message: str, slug: str = "unavailable") -> None:
        super().__init__(message)
        self.slug = slug


class Interpreter:
    def __init__(self, python: str, runner_script: str, workdir: str, env: dict[str, str]) -> None:
        self.python = python
        self.runner_script = runner_script
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctl: Connection | None = None
        self.stdout: OutputPipe | None = None
        self.stderr: OutputPipe | None = None
        self.sink: EventQueue | None = None
        self.lost: str | None = None  # why the previous interpreter ended
        self._lock = threading.Lock()
        self._sink_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[threading.Event, list[list[str]]]] = {}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def ensure(self) -> str | None:
        """Start the interpreter unless it runs; a note when it replaces one that died."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None and self.ctl is not None:
                return None
            self._start()
            note, self.lost = self.lost, None
        if note is None:
            return None
        return (
            f"[a new Python interpreter started: the previous one {note}; earlier state is gone]\n"
        )

    def _start(self) -> None:
        self._close_pipes()
        parent, child = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [self.python, "-u", self.runner_script, "--query-child", str(child.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(child.fileno(),),
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
            )
        except FileNotFoundError as e:
            parent.close()
            raise InterpreterError(
                f"query mode needs Python, and this kernel's image has no {self.python}; "
                "batch mode runs shell commands",
                "unsupported",
            ) from e
        except OSError as e:
            parent.close()
            raise InterpreterError(f"cannot start the Python interpreter {self.python}: {e}") from e
        finally:
            child.close()
        assert proc.stdout is not None
        assert proc.stderr is not None
        self.stdout = OutputPipe(os.dup(proc.stdout.fileno()), "stdout")
        self.stderr = OutputPipe(os.dup(proc.stderr.fileno()), "stderr")
        proc.stdout.close()
        proc.stderr.close()
        self.proc, self.ctl = proc, Connection(parent)
        reader = threading.Thread(
            target=self._read, args=(proc, self.ctl, oom_kills()), name="query-ctl", daemon=True
        )
        try:
            reader.start()
        except RuntimeError as e:  # no thread left (pids limit)
            kill_group(proc.pid)
            proc.wait()
            self.proc = self.ctl = None
            raise InterpreterError(f"cannot watch the Python interpreter: {e}") from e

    def _read(self, proc: subprocess.Popen[bytes], ctl: Connection, oom_before: int | None) -> None:
        while True:
            try:
                message = ctl.receive()
            except (OSError, ProtocolError):
                message = None
            if message is None:
                break
            if message.get("op") == "completions":
                waiter = self._waiting.pop(message.get("id", -1), None)
                if waiter is not None:
                    waiter[1].append(message.get("items") or [])
                    waiter[0].set()
                continue
            with self._sink_lock:
                if self.sink is not None:
                    self.sink.push(message)
                    continue
            if message.get("ack"):
                self.send({"op": "ack"})  # no run to show it: dropped
        # The child closed its control socket: it is exiting or gone.
        returncode = proc.wait()
        note = death_note(returncode, oom_before)
        with self._lock:
            if self.proc is proc:
                self.ctl = None
                self.lost = note
        ctl.close()
        with self._sink_lock:
            if self.sink is not None:
                self.sink.push({"op": "died", "returncode": returncode, "note": note})
        for event, _ in list(self._waiting.values()):
            event.set()

    def _close_pipes(self) -> None:
        for pipe in (self.stdout, self.stderr):
            if pipe is not None:
                pipe.close()
        self.stdout = self.stderr = None

    def attach(self, sink: EventQueue) -> None:
        with self._sink_lock:
            self.sink = sink

    def detach(self, sink: EventQueue) -> None:
        with self._sink_lock:
            if self.sink is sink:
                self.sink = None

    def send(self, message: dict[str, Any]) -> None:
        ctl = self.ctl
        if ctl is not None:
            with contextlib.suppress(OSError):  # the reader thread reports the death
                ctl.send(message)

    def interrupt(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            signal_group(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        proc = self.proc
        if proc is not None:
            kill_group(proc.pid)

    def complete(self, code: str, options: dict[str, Any]) -> list[str]:
        self.ensure()
        request_id = next(self._ids)
        event = threading.Event()
        slot: list[list[str]] = []
        self._waiting[request_id] = (event, slot)
        self.send({"op": "complete", "id": request_id, "code": code, "options": options})
        event.wait(COMPLETE_TIMEOUT)
        self._waiting.pop(request_id, None)
        return list(slot[0]) if slot else []

    def shutdown(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            self.proc.wait()


class QueryJob(Job):
    """One cell run in the persistent interpreter."""

    def __init__(self, interpreter: Interpreter, code: str) -> None:
        super().__init__()
        self.interp = interpreter
        self.code = code

    def start(self) -> list[dict[str, Any]]:
        note = self.interp.ensure()
        assert self.interp.stdout is not None
        assert self.interp.stderr is not None
        self.pipes = [self.interp.stdout, self.interp.stderr]
        self.pid = self.interp.pid
        self.interp.attach(self.queue)
        self.interp.send({"op": "exec", "code": self.code})
        return [{"op": "console", "items": [["stderr", note]]}] if note else []

    def handle(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        op = event.get("op")
        if op == "died":
            note = f"\n[the Python interpreter {event['note']}; the next run starts a fresh one]\n"
            returncode = int(event["returncode"])
            code = 128 - returncode if returncode < 0 else returncode
            return [
                {"op": "console", "items": [["stderr", note]]},
                {"op": "done", "exit_code": code},
            ]
        if op == "console" and event.get("ack"):
            self.interp.send({"op": "ack"})  # the output before it has been read
        if op in ("console", "input-request", "done"):
            return [event]
        return []  # "ready" and the like

    def send_input(self, data: str | None) -> None:
        self.interp.send({"op": "input", "data": data})

    def interrupt(self) -> None:
        self.interp.interrupt()

    def kill(self) -> None:
        self.interp.kill()

    def reap_strays(self) -> None:
        if self.pid is not None:
            kill_group(self.pid, spare=self.interp.pid)

    def close(self) -> None:
        self.interp.detach(self.queue)
        for event in self.queue.drain():  # rich output the run ended before showing
            if event.get("ack"):
                self.interp.send({"op": "ack"})
        super().close()
