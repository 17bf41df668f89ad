"""The execute channel: a websocket on which a manager streams runs, one after another.

The REST execute (:mod:`.exec_routes`) keeps each run on the agent and answers
polls; a manager that holds a client's execute websocket needs none of that.
It borrows a kept-alive channel and the agent relays the runner's frames as
they come, so a run costs one message each way on an open connection::

    GET /v1/exec (websocket, bearer cluster secret)

    manager -> agent
      {"op": "execute", "kernel_id", "run_id", "mode": "query" | "batch", "code", "options"}
      {"op": "input", "data": str}           while the run waits for input
    agent -> manager: a JSON list of the frames received together, each one of
      {"op": "console", "items": [[type, data], ...]}
      {"op": "waiting-input", "prompt", "is_password"}
      {"op": "step", "status": "build-finished" | "clean-finished", "exit_code"}
      {"op": "finished", "status": "finished" | "exec-timeout", "exit_code", "files"}
      {"op": "error", "status": int, "message": str}
    and, while a run is silent, an empty list every ``KEEPALIVE_SECONDS`` (so that a
    manager can tell a quiet run from an agent that is gone)

A run ends at ``finished`` or ``error``; the channel then takes the next
``execute``.  Backpressure is end to end: the runner is read only as fast as
the manager takes messages.  A channel that closes mid-run closes the runner
connection, and the runner interrupts the run (and kills it if it will not stop).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import trio
from quart import websocket
from quart_trio import QuartTrio

from ..errors import APIError, BackendAIError, InvalidAPIParameters, KernelNotFound
from .execution import ExecuteRequest, ExecutionService, parse_execute
from .runner_client import RunnerConnection, check_reply

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
                kernel_id, req = parse_channel_execute(raw)
            except InvalidAPIParameters as e:
                await _send([error_frame(e)])
                continue
            if not await relay_run(service, kernel_id, req):
                await websocket.close(1008, "only 'input' messages are taken during a run")
                return


def parse_channel_execute(raw: str | bytes) -> tuple[str, ExecuteRequest]:
    """(kernel id, request) of an ``execute`` message; InvalidAPIParameters names what is wrong."""
    try:
        message = json.loads(raw)
    except ValueError as e:
        raise InvalidAPIParameters(f"execute channel: message is not JSON: {e}") from None
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


async def _send(frames: list[dict[str, Any]]) -> None:
    await websocket.send(json.dumps(frames, separators=(",", ":"), ensure_ascii=False))


async def relay_run(service: ExecutionService, kernel_id: str, req: ExecuteRequest) -> bool:
    """Run *req* in the kernel, relaying its frames until it ends; False when the manager
    broke the protocol (the run is abandoned, and the channel must close)."""
    try:
        conn = await service.connect(kernel_id)
    except BackendAIError as e:
        await _send([error_frame(e)])
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
        await _send([error_frame(broken)])
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
            await _send([])
            continue
        if batch is None:
            note, exit_code = await service.lost_note(kernel_id, run_id)
            await _send(
                [
                    {"op": "console", "items": [["stderr", note]]},
                    {"op": "finished", "status": "finished", "exit_code": exit_code, "files": []},
                ]
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
            await _send(frames)
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
