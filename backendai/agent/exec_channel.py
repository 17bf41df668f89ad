"""The execute channel: a websocket on which a manager streams runs, one after another.

The REST execute (:mod:`.exec_routes`) keeps each run on the agent and answers
polls; a manager that holds a client's execute websocket needs none of that.
It borrows a kept-alive channel and the agent relays the runner's frames as
they come, so a run costs one message each way on an open connection::

    GET /v1/exec (websocket, bearer cluster secret)

    manager -> agent
      {"op": "execute", "kernel_id", "run_id", "mode": "query" | "batch", "code", "options"}
      {"op": "input", "data": str}           while the run waits for input
    agent -> manager: {"run_id": str | null, "frames": [...]}, the frames received
    together, each one of
      {"op": "console", "items": [[type, data], ...]}
      {"op": "waiting-input", "prompt", "is_password"}
      {"op": "step", "status": "build-finished" | "clean-finished", "exit_code"}
      {"op": "finished", "status": "finished" | "exec-timeout", "exit_code", "files"}
      {"op": "error", "status": int, "message": str}
    and, while a run is silent (or its kernel's runner is still starting), no frames
    every ``KEEPALIVE_SECONDS``, so that a manager can tell a quiet run from an agent
    that is gone.  ``run_id`` names the run the frames belong to (null: a refused
    message between runs): a manager that sees another run's frames must not trust
    the channel any more.

A run ends at ``finished`` or ``error``; the channel then takes the next
``execute``.  An ``input`` that comes after its run ended (the run was
interrupted, or timed out, while the user typed) is dropped.  Backpressure is end to end: the runner is read only as fast as
the manager takes messages.  A channel that closes mid-run closes the runner
connection, and the runner interrupts the run (and kills it if it will not stop).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import trio
from quart import websocket
from quart_trio import QuartTrio

from ..errors import (
    APIError,
    BackendAIError,
    InvalidAPIParameters,
    KernelError,
    KernelNotFound,
)
from .execution import ExecuteRequest, ExecutionService, parse_execute
from .runner_client import RunnerConnection, check_reply, connect_runner

__all__ = ["add_exec_channel"]

log = logging.getLogger(__name__)

_RUN_FRAMES = ("console", "waiting-input", "step", "finished")
KEEPALIVE_SECONDS = 10.0


def add_exec_channel(app: QuartTrio, service: ExecutionService) -> None:
    @app.websocket("/v1/exec")
    async def exec_channel() -> None:
        await websocket.accept()
        while True:
            raw = await websocket.receive()
            try:
                parsed = parse_channel_execute(raw)
            except InvalidAPIParameters as e:
                await _send(None, [error_frame(e)])
                continue
            if parsed is None:
                log.debug("execute channel: dropped an input that came after its run ended")
                continue
            kernel_id, req = parsed
            if not await relay_run(service, kernel_id, req):
                await websocket.close(1008, "only 'input' messages are taken during a run")
                return


def parse_channel_execute(raw: str | bytes) -> tuple[str, ExecuteRequest] | None:
    """(kernel id, request) of an ``execute`` message; None for an ``input`` whose run has
    ended (to drop); InvalidAPIParameters names what else is wrong."""
    try:
        message = json.loads(raw)
    except ValueError as e:
        raise InvalidAPIParameters(f"execute channel: message is not JSON: {e}") from None
    if isinstance(message, dict) and message.get("op") == "input":
        return None
    if not isinstance(message, dict) or message.get("op") != "execute":
        op = message.get("op") if isinstance(message, dict) else None
        raise InvalidAPIParameters(
            f"execute channel: expected an 'execute' message between runs, got op {op!r}"
        )
    kernel_id = message.get("kernel_id")
    if not isinstance(kernel_id, str) or not kernel_id:
        raise InvalidAPIParameters(f"kernel_id: invalid value {kernel_id!r}; expected a kernel id")
    req = parse_execute({key: message.get(key) for key in ("mode", "run_id", "code", "options")})
    if req.mode not in ("query", "batch"):
        raise InvalidAPIParameters(
            f"mode: invalid value {req.mode!r}; a run on the channel starts as query or batch"
        )
    return kernel_id, req


def error_frame(e: BackendAIError) -> dict[str, Any]:
    if isinstance(e, APIError):
        status = e.status
    elif isinstance(e, KernelNotFound):
        status = 404
    else:
        status = 500
    return {"op": "error", "status": status, "message": str(e)}


async def _send(run_id: str | None, frames: list[dict[str, Any]]) -> None:
    message = {"run_id": run_id, "frames": frames}
    await websocket.send(json.dumps(message, separators=(",", ":"), ensure_ascii=False))


async def _connect(service: ExecutionService, kernel_id: str, run_id: str) -> RunnerConnection:
    """The kernel's runner (up to ``RUNNER_START_WAIT`` for one still starting), with
    keepalives to the manager meanwhile."""
    with contextlib.suppress(KernelError):  # a warm kernel answers at once
        return await connect_runner(service.ipc_dir(kernel_id), kernel_id)
    async with trio.open_nursery() as nursery:

        async def keepalive() -> None:
            while True:
                await trio.sleep(KEEPALIVE_SECONDS)
                await _send(run_id, [])

        nursery.start_soon(keepalive)
        conn = await service.connect(kernel_id)
        nursery.cancel_scope.cancel()
    return conn


async def relay_run(service: ExecutionService, kernel_id: str, req: ExecuteRequest) -> bool:
    """Run *req* in the kernel, relaying its frames until it ends; False when the manager
    broke the protocol (the run is abandoned, and the channel must close)."""
    conn: RunnerConnection | None = None
    failed: BackendAIError | None = None
    try:
        conn = await _connect(service, kernel_id, req.run_id)
    except* BackendAIError as group:
        first = group.exceptions[0]
        assert isinstance(first, BackendAIError)
        failed = first
    if conn is None:
        assert failed is not None
        await _send(req.run_id, [error_frame(failed)])
        return True
    in_order = True
    try:
        await conn.send(
            {
                "op": "execute",
                "run_id": req.run_id,
                "mode": req.mode,
                "code": req.code,
                "options": dict(req.options),
            }
        )
        async with trio.open_nursery() as nursery:

            async def inputs() -> None:
                nonlocal in_order
                in_order = await _inputs(conn, req.run_id)
                nursery.cancel_scope.cancel()

            nursery.start_soon(inputs)
            await _outputs(service, conn, kernel_id, req.run_id)
            nursery.cancel_scope.cancel()
    except* BackendAIError as group:  # the runner connection broke or sent garbage
        broken = group.exceptions[0]
        assert isinstance(broken, BackendAIError)
        await _send(req.run_id, [error_frame(broken)])
    finally:
        await conn.aclose()
    return in_order


async def _outputs(
    service: ExecutionService, conn: RunnerConnection, kernel_id: str, run_id: str
) -> None:
    what = f"execute run {run_id!r} in kernel {kernel_id!r}"
    while True:
        batch: list[dict[str, Any]] | None = []
        with trio.move_on_after(KEEPALIVE_SECONDS):
            batch = await conn.receive_batch()
        if batch == []:
            await _send(run_id, [])
            continue
        if batch is None:
            note, exit_code = await service.lost_note(kernel_id, run_id)
            await _send(
                run_id,
                [
                    {"op": "console", "items": [["stderr", note]]},
                    {"op": "finished", "status": "finished", "exit_code": exit_code, "files": []},
                ],
            )
            return
        frames: list[dict[str, Any]] = []
        ended = False
        for message in batch:
            op = message.get("op")
            if op == "error":
                try:
                    check_reply(message, what)
                except BackendAIError as e:
                    frames.append(error_frame(e))
                ended = True
                break
            if op in _RUN_FRAMES:
                frames.append(message)
                if op == "finished":
                    ended = True
                    break
            else:
                log.debug("run %s: ignoring runner message %r", run_id, op)
        if frames:
            await _send(run_id, frames)
        if ended:
            return


async def _inputs(conn: RunnerConnection, run_id: str) -> bool:
    """Pass answers to input requests from the manager to the runner; False (at once) on
    any other message."""
    while True:
        raw = await websocket.receive()
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict) or message.get("op") != "input":
            log.warning(
                "execute channel: unexpected message during run %s (%.80r); closing the channel",
                run_id,
                raw,
            )
            return False
        data = message.get("data")
        answer = data if isinstance(data, str) else ""
        await conn.send({"op": "input", "run_id": run_id, "data": answer})
