"""Runs of code in kernels, kept by the agent so that managers stay stateless.

A run is one ``execute`` on the kernel runner (query or batch), identified by
(kernel id, run id).  The agent holds its runner connection and a bounded
console buffer; each ``POST /v1/kernels/{kid}/execute`` collects what the run
produced until it finishes, asks for input, reports a batch step, fills the
buffer, or ``flush`` seconds pass::

    {"run_id", "status": "continued" | "waiting-input" | "build-finished" |
     "clean-finished" | "finished" | "exec-timeout",
     "exit_code": int | None, "console": [[type, data], ...], "options": {...}, "files": [...]}

Backpressure, not truncation: a pump task reads the runner only while the
buffer holds less than ``CONSOLE_LIMIT`` bytes and no status waits to be
collected, so a cell printing faster than its client reads blocks in
``write`` inside the kernel.

A run nobody collects for ``agent.run_idle_timeout`` seconds is forgotten:
its runner connection is closed, and the runner interrupts the run (and kills
it a moment later if it does not stop).  A finished run is forgotten once its
final result has been collected.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import trio

from ..errors import Conflict, InvalidAPIParameters, KernelError, KernelNotFound, NotFound
from .registry import KernelRegistry
from .runner_client import RunnerConnection, check_reply, connect_runner
from .runs import CONSOLE_LIMIT, Run

__all__ = ["CONSOLE_LIMIT", "ExecuteRequest", "ExecutionService", "parse_execute"]

log = logging.getLogger(__name__)

MAX_FLUSH = 600.0
MODES = ("query", "batch", "input", "continue")
FINAL_STATUSES = ("finished", "exec-timeout")
EXIT_WAIT = 2.0
RUNNER_START_WAIT = 30.0


@dataclass(frozen=True)
class ExecuteRequest:
    mode: str
    run_id: str
    code: str
    options: Mapping[str, Any]
    flush: float = 2.0


def parse_execute(raw: Any) -> ExecuteRequest:
    """Validate an execute request body."""
    if not isinstance(raw, Mapping):
        raise InvalidAPIParameters(f"execute: body must be a JSON object, got {type(raw).__name__}")
    mode = raw.get("mode")
    if mode not in MODES:
        raise InvalidAPIParameters(
            f"mode: invalid value {mode!r}; expected one of {', '.join(MODES)}"
        )
    run_id = raw.get("run_id")
    if not isinstance(run_id, str) or not 1 <= len(run_id) <= 64 or not run_id.isprintable():
        raise InvalidAPIParameters(
            f"run_id: invalid value {run_id!r}; expected a string of 1-64 printable characters"
        )
    code = raw.get("code")
    code = "" if code is None else code
    if not isinstance(code, str):
        raise InvalidAPIParameters(
            f"code: invalid value of type {type(code).__name__}; expected a string"
        )
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidAPIParameters(f"options: invalid value {options!r}; expected an object")
    flush = raw.get("flush", 2.0)
    if (
        not isinstance(flush, int | float)
        or isinstance(flush, bool)
        or not 0 <= flush <= MAX_FLUSH
        or math.isnan(flush)
    ):
        raise InvalidAPIParameters(
            f"flush: invalid value {flush!r}; expected seconds from 0 to {MAX_FLUSH:g}"
        )
    return ExecuteRequest(mode, run_id, code, dict(options), float(flush))


class ExecutionService:
    def __init__(self, registry: KernelRegistry, *, run_idle_timeout: float) -> None:
        self.registry = registry
        self.idle_timeout = run_idle_timeout
        self.runs: dict[tuple[str, str], Run] = {}
        self._nursery: trio.Nursery | None = None

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Own the runs' pump tasks; forget idle runs."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(max(0.05, min(self.idle_timeout / 4, 5.0)))
                    self.sweep()
            finally:
                self._nursery = None
                for run in list(self.runs.values()):
                    self._forget(run)
        raise AssertionError("the execution service's nursery ended without being cancelled")

    def ipc_dir(self, kernel_id: str) -> Path:
        if not kernel_id or "/" in kernel_id or kernel_id.startswith(".") or "\x00" in kernel_id:
            raise InvalidAPIParameters(f"kernel id: invalid value {kernel_id!r}")
        return self.registry.scratch_dir / kernel_id / "ipc"

    async def connect(self, kernel_id: str) -> RunnerConnection:
        """A connection to the kernel's runner; KernelNotFound if the kernel does not exist.

        A kernel that runs but whose runner is still starting gets ``RUNNER_START_WAIT``
        seconds to open its socket.
        """
        ipc_dir = self.ipc_dir(kernel_id)
        deadline: float | None = None
        while True:
            try:
                return await connect_runner(ipc_dir, kernel_id)
            except KernelError:
                if deadline is None:
                    info = await self.registry.backend.inspect(kernel_id)  # KernelNotFound
                    # Dummy kernels are records: no runner will ever answer.
                    if info.state == "exited" or self.registry.backend.name == "dummy":
                        raise
                    deadline = trio.current_time() + RUNNER_START_WAIT
                if trio.current_time() >= deadline:
                    raise
            await trio.sleep(0.02)

    async def request(self, kernel_id: str, message: dict[str, Any], what: str) -> dict[str, Any]:
        """One request to the kernel's runner and its reply."""
        conn = await self.connect(kernel_id)
        try:
            return await conn.request(message, what)
        finally:
            await conn.aclose()

    # -- the operations -----------------------------------------------------

    async def execute(self, kernel_id: str, req: ExecuteRequest) -> dict[str, Any]:
        if req.mode in ("query", "batch"):
            run = await self._start(kernel_id, req)
        else:
            run = self._get(kernel_id, req.run_id)
            if req.mode == "input":
                if not run.waiting_input:
                    raise Conflict(
                        f"run {req.run_id!r} in kernel {kernel_id!r} is not waiting for input"
                    )
                run.waiting_input = False
                await run.conn.send({"op": "input", "run_id": req.run_id, "data": req.code})
        return await self._collect(run, req.flush)

    async def interrupt(self, kernel_id: str) -> dict[str, Any]:
        reply = await self.request(
            kernel_id, {"op": "interrupt"}, f"interrupt kernel {kernel_id!r}"
        )
        run_id = reply.get("run_id")
        return {"interrupted": run_id is not None, "run_id": run_id}

    async def complete(self, kernel_id: str, code: Any, options: Any) -> list[str]:
        if not isinstance(code, str) or not isinstance(options, Mapping):
            raise InvalidAPIParameters("complete: expected code (a string) and options (an object)")
        reply = await self.request(
            kernel_id,
            {"op": "complete", "code": code, "options": dict(options)},
            f"complete in kernel {kernel_id!r}",
        )
        return [str(item) for item in reply.get("items") or []]

    # -- runs -----------------------------------------------------------------

    async def _start(self, kernel_id: str, req: ExecuteRequest) -> Run:
        if self._nursery is None:
            raise KernelError("the agent's execution service is not running")
        key = (kernel_id, req.run_id)
        if key in self.runs:
            raise Conflict(f"run {req.run_id!r} already exists in kernel {kernel_id!r}")
        conn = await self.connect(kernel_id)
        if key in self.runs:  # started by a concurrent request while we connected
            await conn.aclose()
            raise Conflict(f"run {req.run_id!r} already exists in kernel {kernel_id!r}")
        run = self.runs[key] = Run(kernel_id, req.run_id, conn)
        message = {"op": "execute", "run_id": req.run_id, "mode": req.mode, "code": req.code}
        try:
            await conn.send({**message, "options": dict(req.options)})
        except BaseException:
            del self.runs[key]
            await conn.aclose()
            raise
        self._nursery.start_soon(self._pump, run)
        return run

    def _get(self, kernel_id: str, run_id: str) -> Run:
        run = self.runs.get((kernel_id, run_id))
        if run is None:
            raise NotFound(
                f"no run {run_id!r} in kernel {kernel_id!r}: it finished and its result was "
                f"collected, was forgotten after {self.idle_timeout:g} s without a caller, "
                "or never existed"
            )
        return run

    async def _collect(self, run: Run, flush: float) -> dict[str, Any]:
        async with run.lock:
            run.last_seen = trio.current_time()
            try:
                with trio.move_on_after(flush):
                    while not run.ready:
                        await run.wait_changed()
            finally:
                run.last_seen = trio.current_time()
            if run.error is not None:
                self._forget(run)
                raise run.error
            result = run.take()
            if result["status"] == "waiting-input":
                run.waiting_input = True
            if run.final and run.milestone is None and result["status"] in FINAL_STATUSES:
                self._forget(run)
            return result

    def _forget(self, run: Run) -> None:
        if self.runs.get((run.kernel_id, run.run_id)) is run:
            del self.runs[(run.kernel_id, run.run_id)]
        run.scope.cancel()

    def sweep(self) -> None:
        now = trio.current_time()
        for run in list(self.runs.values()):
            if not run.lock.locked() and now - run.last_seen > self.idle_timeout:
                log.info(
                    "run %s in kernel %s: nobody collected it for %.0f s; forgetting it "
                    "(the runner interrupts it)",
                    run.run_id,
                    run.kernel_id,
                    now - run.last_seen,
                )
                self._forget(run)

    async def _pump(self, run: Run) -> None:
        with run.scope:
            try:
                while not run.final:
                    while run.blocked:
                        await run.wait_room()
                    message = await run.conn.receive()
                    if message is None:
                        await self._lost(run)
                        return
                    self._on_message(run, message)
            except KernelError as e:
                run.error = e
                run.notify()
            finally:
                await run.conn.aclose()

    def _on_message(self, run: Run, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "console":
            run.add(message.get("items"))
        elif op == "waiting-input":
            run.milestone = {
                "status": "waiting-input",
                "options": {"is_password": bool(message.get("is_password"))},
            }
        elif op == "step":
            run.milestone = {
                "status": str(message.get("status")),
                "exit_code": message.get("exit_code"),
            }
        elif op == "finished":
            run.final = True
            run.milestone = {
                "status": str(message.get("status")),
                "exit_code": message.get("exit_code"),
                "files": message.get("files") or [],
            }
        elif op == "error":
            try:
                check_reply(message, f"execute run {run.run_id!r} in kernel {run.kernel_id!r}")
            except Exception as e:
                run.error = e
            run.final = True
        else:
            log.debug("run %s: ignoring runner message %r", run.run_id, op)
        run.notify()

    async def _lost(self, run: Run) -> None:
        """The runner hung up before the run finished: say why, as well as we know."""
        note, exit_code = await self.lost_note(run.kernel_id, run.run_id)
        run.add([["stderr", note]])
        run.final = True
        run.milestone = {"status": "finished", "exit_code": exit_code}
        run.notify()

    async def lost_note(self, kernel_id: str, run_id: str) -> tuple[str, int | None]:
        """Why the runner hung up before run *run_id* finished, as well as we know, and the
        kernel's exit code if it exited."""
        exit_code: int | None = None
        why = "the kernel's runner closed the connection"
        with trio.move_on_after(EXIT_WAIT):
            while True:
                try:
                    info = await self.registry.backend.inspect(kernel_id)
                except KernelNotFound:
                    why = "the kernel is gone"
                    break
                if info.state == "exited":
                    exit_code = info.exit_code
                    why = f"the kernel exited with code {exit_code}"
                    if exit_code == 137:
                        why += " (killed: out of memory, or SIGKILL)"
                    break
                await trio.sleep(0.1)
        return f"\n[{why} before run {run_id!r} finished]\n", exit_code
