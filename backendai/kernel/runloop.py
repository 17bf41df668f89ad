"""One run, driven on its own connection: output streamed with backpressure.

A :class:`Job` (query or batch) owns output pipes and an :class:`EventQueue`.
:func:`drive` multiplexes the pipes, the job's events and the client socket
with ``poll``, and sends ``console`` / ``waiting-input`` / ``step`` frames,
then one ``finished`` frame.

Memory stays bounded: frames wait in an :class:`~.wire.Outbox` of at most
about ``HIGH_WATER`` bytes; while it is full the pipes are not read, so a
process printing faster than the client reads blocks in ``write``.

A client that goes away (EOF, a broken socket) detaches the run: the job is
interrupted (SIGINT), its output is read and dropped so it cannot block, input
requests get EOF, and it is killed if it has not ended ``DETACH_GRACE``
seconds later.  The exec timeout (``options.exec_timeout``) interrupts the job
the same way, kills it after ``TIMEOUT_GRACE``, and ends the run with status
``exec-timeout``.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from .jobs import Job, OutputPipe
from .wire import FrameDecoder, Outbox, ProtocolError

HIGH_WATER = 256 * 1024
DRAIN_LIMIT = 1024 * 1024
DETACH_GRACE = 3.0
TIMEOUT_GRACE = 2.0
KILL_GRACE = 10.0
FINISH_FLUSH = 30.0
MAX_OUTPUT_FILES = 1000


class Console:
    """Console items of the next frame; adjacent text of one stream is merged."""

    def __init__(self) -> None:
        self.items: list[list[Any]] = []

    def add(self, kind: str, data: Any) -> None:
        if kind in ("stdout", "stderr") and self.items and self.items[-1][0] == kind:
            self.items[-1][1] += data
        elif data != "":
            self.items.append([kind, data])

    def take(self) -> list[list[Any]]:
        items, self.items = self.items, []
        return items


def snapshot(directory: str) -> dict[str, tuple[int, int]]:
    """(size, mtime) of the files under *directory*, at most MAX_OUTPUT_FILES of them."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            found[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns)
            if len(found) >= MAX_OUTPUT_FILES:
                return found
    return found


def changed_files(directory: str, before: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    after = snapshot(directory)
    return [
        {"name": name, "path": os.path.join(directory, name), "size": size}
        for name, (size, mtime) in sorted(after.items())
        if before.get(name) != (size, mtime)
    ]


def drive(
    sock: socket.socket,
    run_id: str,
    job: Job,
    *,
    exec_timeout: float,
    output_dir: str,
    on_end: Callable[[], None],
) -> None:
    """Run *job* to its end, talking to the client on *sock* (see the module docstring).

    *on_end* is called when the job has ended, before the ``finished`` frame goes out (so a
    client that starts its next run on that frame finds the kernel free).
    """
    _Drive(sock, run_id, job, exec_timeout, output_dir).run(on_end)


class _Drive:
    def __init__(
        self, sock: socket.socket, run_id: str, job: Job, exec_timeout: float, output_dir: str
    ) -> None:
        sock.setblocking(False)
        self.sock, self.run_id, self.job, self.output_dir = sock, run_id, job, output_dir
        self.out = Outbox(sock, HIGH_WATER)
        self.frames = FrameDecoder()
        self.console = Console()
        now = time.monotonic()
        self.deadline = now + exec_timeout if exec_timeout > 0 else None
        self.exec_timeout = exec_timeout
        self.kill_at: float | None = None
        self.give_up_at: float | None = None
        self.detached = False
        self.timed_out = False
        self.exit_code: int | None = None

    def run(self, on_end: Callable[[], None]) -> None:
        before = snapshot(self.output_dir)
        try:
            for event in self.job.start():
                self.on_event(event)
            while self.exit_code is None:
                self.step()
            if self.timed_out or self.detached:
                self.job.reap_strays()
        finally:
            self.job.close()
            on_end()
        status = "exec-timeout" if self.timed_out else "finished"
        self.flush_console()
        self.out.put(
            {
                "op": "finished",
                "run_id": self.run_id,
                "status": status,
                "exit_code": self.exit_code,
                "files": changed_files(self.output_dir, before),
            }
        )
        self.flush_out(FINISH_FLUSH)

    def step(self) -> None:
        poller = select.poll()
        pipes = {p.fd: p for p in self.job.pipes if not p.eof}
        if self.detached or not self.out.full:
            for fd in pipes:
                poller.register(fd, select.POLLIN)
        poller.register(self.job.queue.fileno(), select.POLLIN)
        if not self.detached:
            poller.register(self.sock, select.POLLIN | (select.POLLOUT if self.out.pending else 0))
        for fd, mask in poller.poll(self.poll_timeout()):
            if fd in pipes:
                self.add_output(pipes[fd], pipes[fd].read())
            elif fd == self.sock.fileno():
                if mask & select.POLLOUT:
                    self.out.write_some()
                if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    self.on_client_readable()
        if self.out.broken and not self.detached:
            self.detach()
        events = self.job.queue.drain()
        if events:
            self.drain_pipes()
            for raw in events:
                for event in self.job.handle(raw):
                    self.on_event(event)
        self.check_clocks()
        self.flush_console()

    def poll_timeout(self) -> int | None:
        clocks = [t for t in (self.deadline, self.kill_at, self.give_up_at) if t is not None]
        if not clocks:
            return None
        return max(0, int((min(clocks) - time.monotonic()) * 1000) + 1)

    def add_output(self, pipe: OutputPipe, text: str) -> None:
        if text and not self.detached:
            self.console.add(pipe.name, text)

    def drain_pipes(self) -> None:
        """Read what the job wrote before its latest event (bounded: it may still write)."""
        for pipe in self.job.pipes:
            taken = 0
            while not pipe.eof and taken < DRAIN_LIMIT:
                text = pipe.read()
                if not text:
                    break
                taken += len(text)
                self.add_output(pipe, text)

    def on_client_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.detach()
            return
        try:
            messages = self.frames.feed(data)
        except ProtocolError as e:
            self.out.put({"op": "error", "error": "bad-frame", "message": str(e)})
            self.detach()
            return
        for message in messages:
            if message.get("op") == "input":
                answer = message.get("data")
                self.job.send_input(answer if isinstance(answer, str) else "")
            else:
                self.out.put(
                    {
                        "op": "error",
                        "error": "unknown-op",
                        "message": f"op {message.get('op')!r} during run {self.run_id!r}; "
                        "expected 'input'",
                    }
                )

    def on_event(self, event: dict[str, Any]) -> None:
        op = event["op"]
        if op == "console":
            for kind, data in event["items"]:
                if not self.detached:
                    self.console.add(kind, data)
        elif op == "input-request":
            if self.detached:
                self.job.send_input(None)  # nobody can answer: EOF
                return
            self.flush_console()
            self.out.put(
                {
                    "op": "waiting-input",
                    "run_id": self.run_id,
                    "prompt": event.get("prompt", ""),
                    "is_password": bool(event.get("is_password")),
                }
            )
        elif op == "step":
            self.flush_console()
            self.out.put(
                {
                    "op": "step",
                    "run_id": self.run_id,
                    "status": event["status"],
                    "exit_code": event["exit_code"],
                }
            )
        elif op == "done":
            self.drain_pipes()
            self.exit_code = int(event["exit_code"])

    def detach(self) -> None:
        """The client is gone: stop the job, drop its output."""
        self.detached = True
        self.console.take()
        self.job.interrupt()
        self.job.send_input(None)
        limit = time.monotonic() + DETACH_GRACE
        self.kill_at = limit if self.kill_at is None else min(self.kill_at, limit)

    def check_clocks(self) -> None:
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.timed_out = True
            self.console.add(
                "stderr", f"\n[execution timed out after {self.exec_timeout:g} s; stopping it]\n"
            )
            self.job.interrupt()
            self.job.send_input(None)
            self.kill_at = now + TIMEOUT_GRACE
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            self.job.kill()
            self.give_up_at = now + KILL_GRACE
        if self.give_up_at is not None and now >= self.give_up_at and self.exit_code is None:
            self.console.add("stderr", "[the run did not end after SIGKILL; giving up on it]\n")
            self.exit_code = 137

    def flush_console(self) -> None:
        items = self.console.take()
        if items and not self.detached:
            self.out.put({"op": "console", "run_id": self.run_id, "items": items})

    def flush_out(self, limit: float) -> None:
        end = time.monotonic() + limit
        while self.out.pending and not self.detached:
            left = end - time.monotonic()
            if left <= 0:
                return
            poller = select.poll()
            poller.register(self.sock, select.POLLOUT)
            if poller.poll(int(left * 1000) + 1):
                self.out.write_some()
