"""Batch mode: ``clean``, ``build`` and ``exec`` shell commands, run in that order.

Each step is ``/bin/sh -c COMMAND`` in the work directory, in its own process
group, with stdin from /dev/null and ``PYTHONUNBUFFERED=1`` so Python scripts
stream.  A step that is absent or empty is skipped; ``"*"`` means the default
for the directory's contents (:func:`default_command`).  After ``clean`` and
``build`` the run reports a ``step`` (``clean-finished`` / ``build-finished``
with the exit code); a failing build ends the run with its exit code and
``exec`` is skipped; a failing clean does not stop the run.  The run's exit
code is the exec step's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any

from .jobs import Job, OutputPipe
from .proctools import (
    OOM_FIRST_SH,
    death_note,
    exit_code,
    kill_group,
    oom_kills,
    oom_note,
    signal_group,
)

STEPS = ("clean", "build", "exec")
SHELL = "/bin/sh"


class BatchError(Exception):
    """The batch options are not usable."""


def default_command(step: str, workdir: str) -> str | None:
    """What ``"*"`` means for *step*, given the files in *workdir*; None: nothing to do."""

    def has(name: str) -> bool:
        return os.path.isfile(os.path.join(workdir, name))

    if has("Makefile"):
        return {"clean": "make clean", "build": "make", "exec": "make run"}[step]
    if step == "exec":
        if has("main.py"):
            return "python3 main.py"
        if has("main.sh"):
            return "sh main.sh"
    return None


def parse_steps(options: dict[str, Any]) -> list[tuple[str, str]]:
    """The (step, command) pairs to run, in order; BatchError on bad options."""
    steps = []
    for step in STEPS:
        command = options.get(step)
        if command is None or command == "":
            continue
        if not isinstance(command, str):
            raise BatchError(
                f"options.{step}: invalid value {command!r}; expected a shell command or '*'"
            )
        steps.append((step, command))
    if not any(step == "exec" for step, _ in steps):
        raise BatchError("batch mode needs options.exec: a shell command, or '*' for the default")
    return steps


class BatchJob(Job):
    def __init__(self, steps: list[tuple[str, str]], workdir: str, env: dict[str, str]) -> None:
        super().__init__()
        self.steps = list(steps)
        self.workdir = workdir
        self.env = dict(env, PYTHONUNBUFFERED="1")
        self.proc: subprocess.Popen[bytes] | None = None
        self.step = ""
        self.stopped = False

    def start(self) -> list[dict[str, Any]]:
        return self._next()

    def _next(self) -> list[dict[str, Any]]:
        """Start the next step; events for steps that end before they begin."""
        events: list[dict[str, Any]] = []
        while self.steps:
            step, command = self.steps.pop(0)
            if command == "*":
                resolved = default_command(step, self.workdir)
                if resolved is None:
                    note = f"[batch: no default {step} command for the files in {self.workdir}]\n"
                    events.append({"op": "console", "items": [["stderr", note]]})
                    if step == "exec":
                        return [*events, {"op": "done", "exit_code": 127}]
                    continue
                command = resolved
            error = self._spawn(step, command)
            if error is None:
                return events
            events.append({"op": "console", "items": [["stderr", error]]})
            return [*events, {"op": "done", "exit_code": 127}]
        return [*events, {"op": "done", "exit_code": 0}]

    def _spawn(self, step: str, command: str) -> str | None:
        try:
            proc = subprocess.Popen(
                [SHELL, "-c", OOM_FIRST_SH, "sh", command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
            )
        except OSError as e:
            return f"[batch: cannot start the {step} step with {SHELL}: {e}]\n"
        assert proc.stdout is not None
        assert proc.stderr is not None
        self.pipes = [
            OutputPipe(os.dup(proc.stdout.fileno()), "stdout"),
            OutputPipe(os.dup(proc.stderr.fileno()), "stderr"),
        ]
        proc.stdout.close()
        proc.stderr.close()
        self.proc, self.step = proc, step
        oom_before = oom_kills()

        def wait() -> None:
            returncode = proc.wait()
            self.queue.push(
                {"op": "exited", "step": step, "returncode": returncode, "oom": oom_before}
            )

        try:
            threading.Thread(target=wait, name=f"batch-{step}", daemon=True).start()
        except RuntimeError as e:
            kill_group(proc.pid)
            proc.wait()
            return f"[batch: cannot watch the {step} step: {e}]\n"
        return None

    def handle(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("op") == "console":
            return [event]
        if event.get("op") != "exited":
            return []
        for pipe in self.pipes:
            pipe.close()
        self.pipes = []
        returncode = int(event["returncode"])
        code = exit_code(returncode)
        events: list[dict[str, Any]] = []
        # A step's shell reports a command it lost to SIGKILL as 137: the OOM killer, maybe.
        why = death_note(returncode, event["oom"]) if returncode < 0 else None
        if code == 128 + signal.SIGKILL and why is None:
            why = oom_note(event["oom"])
        if why is not None:
            note = f"[batch: the {event['step']} step {why}]\n"
            events.append({"op": "console", "items": [["stderr", note]]})
        step = event["step"]
        if step == "exec" or self.stopped:
            return [*events, {"op": "done", "exit_code": code}]
        events.append({"op": "step", "status": f"{step}-finished", "exit_code": code})
        if step == "build" and code != 0:
            note = f"[batch: the build failed with exit code {code}; exec skipped]\n"
            events.append({"op": "console", "items": [["stderr", note]]})
            return [*events, {"op": "done", "exit_code": code}]
        return events + self._next()

    def send_input(self, data: str | None) -> None:
        pass  # batch steps read /dev/null

    def interrupt(self) -> None:
        self.stopped = True
        if self.proc is not None and self.proc.poll() is None:
            signal_group(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        self.stopped = True
        if self.proc is not None:
            kill_group(self.proc.pid)

    def reap_strays(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.close()
        super().close()
