"""Code execution over the agent's RPC API: execute, interrupt, complete, and the pty websocket.

::

    POST /v1/kernels/{kid}/execute    {mode, run_id, code, options, flush} -> a run result
    POST /v1/kernels/{kid}/interrupt  -> {"interrupted": bool, "run_id": str | null}
    POST /v1/kernels/{kid}/complete   {code, options} -> {"result": [...]}
    GET  /v1/kernels/{kid}/pty        websocket (query: rows, cols)

The pty websocket speaks Backend.AI's terminal messages.  From the caller:
``{"type": "stdin", "chars": <base64>}``, ``{"type": "resize", "rows", "cols"}``,
``{"type": "ping"}`` (answered ``{"type": "pong"}``), ``{"type": "restart"}``
(a fresh shell).  To the caller: ``{"type": "out", "data": <base64>}``, and
``{"type": "exit", "code"}`` before the socket closes when the shell ends.  A
message that is not one of these gets ``{"type": "error", "msg"}`` and the
terminal carries on.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

import trio
from quart import Response, request, websocket
from quart_trio import QuartTrio

from ..errors import BackendAIError, InvalidAPIParameters
from .execution import ExecutionService, parse_execute
from .runner_client import RunnerConnection, check_reply

__all__ = ["add_execution_routes"]

log = logging.getLogger(__name__)


def _json(obj: Any) -> Response:
    return Response(json.dumps(obj), content_type="application/json")


async def _body() -> Any:
    raw = await request.get_data()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as e:
        raise InvalidAPIParameters(f"body is not JSON: {e}") from None


def _size(args: Any, name: str, default: int) -> int:
    value = args.get(name)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= 10000:
        raise InvalidAPIParameters(f"{name}: invalid value {value!r}; expected 1 to 10000")
    return int(value)


def add_execution_routes(app: QuartTrio, service: ExecutionService) -> None:
    @app.route("/v1/kernels/<kernel_id>/execute", methods=["POST"])
    async def execute(kernel_id: str) -> Response:
        return _json(await service.execute(kernel_id, parse_execute(await _body())))

    @app.route("/v1/kernels/<kernel_id>/interrupt", methods=["POST"])
    async def interrupt(kernel_id: str) -> Response:
        return _json(await service.interrupt(kernel_id))

    @app.route("/v1/kernels/<kernel_id>/complete", methods=["POST"])
    async def complete(kernel_id: str) -> Response:
        body = await _body()
        if not isinstance(body, dict):
            raise InvalidAPIParameters("complete: body must be a JSON object {code, options}")
        items = await service.complete(kernel_id, body.get("code", ""), body.get("options") or {})
        return _json({"result": items})

    @app.websocket("/v1/kernels/<kernel_id>/pty")
    async def pty(kernel_id: str) -> None:
        rows = _size(websocket.args, "rows", 24)
        cols = _size(websocket.args, "cols", 80)
        conn: RunnerConnection | None = await _open_pty(service, kernel_id, rows, cols)
        await websocket.accept()
        while conn is not None:
            try:
                restart = await _bridge(conn)
            finally:
                await conn.aclose()
            conn = await _open_pty(service, kernel_id, rows, cols) if restart else None
        await websocket.close(1000)


async def _open_pty(
    service: ExecutionService, kernel_id: str, rows: int, cols: int
) -> RunnerConnection:
    conn = await service.connect(kernel_id)
    try:
        await conn.request(
            {"op": "pty", "rows": rows, "cols": cols}, f"open a terminal in kernel {kernel_id!r}"
        )
    except BaseException:
        await conn.aclose()
        raise
    return conn


async def _bridge(conn: RunnerConnection) -> bool:
    """Relay until the shell exits (False) or the caller asks for a restart (True)."""
    restart = False

    async def from_caller(cancel: trio.CancelScope) -> None:
        nonlocal restart
        while True:
            raw = await websocket.receive()
            try:
                message = _parse(raw)
            except ValueError as e:
                await websocket.send(json.dumps({"type": "error", "msg": str(e)}))
                continue
            kind = message["type"]
            if kind == "stdin":
                await conn.send({"op": "in", "data": message["chars"]})
            elif kind == "resize":
                await conn.send({"op": "resize", "rows": message["rows"], "cols": message["cols"]})
            elif kind == "ping":
                await websocket.send(json.dumps({"type": "pong"}))
            elif kind == "restart":
                restart = True
                cancel.cancel()
                return

    async def to_caller(cancel: trio.CancelScope) -> None:
        while True:
            message = await conn.receive()
            if message is None:
                break
            op = message.get("op")
            if op == "out":
                await websocket.send(json.dumps({"type": "out", "data": message.get("data", "")}))
            elif op == "exit":
                await websocket.send(json.dumps({"type": "exit", "code": message.get("code")}))
                break
            elif op == "error":  # the runner refused a message (e.g. a bad size)
                try:
                    check_reply(message, "terminal")
                except BackendAIError as e:
                    await websocket.send(json.dumps({"type": "error", "msg": str(e)}))
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(from_caller, nursery.cancel_scope)
        nursery.start_soon(to_caller, nursery.cancel_scope)
    return restart


def _parse(raw: str | bytes) -> dict[str, Any]:
    """A caller's terminal message, checked; ValueError names what is wrong."""
    try:
        message = json.loads(raw)
    except ValueError:
        raise ValueError(
            f"not JSON: {str(raw)[:80]!r}; expected a terminal message object"
        ) from None
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object with a 'type', got {type(message).__name__}")
    kind = message.get("type")
    if kind == "stdin":
        chars = message.get("chars")
        if not isinstance(chars, str):
            raise ValueError("stdin: 'chars' must be a base64 string")
        try:
            base64.b64decode(chars, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"stdin: 'chars' is not base64: {chars[:40]!r}") from None
    elif kind == "resize":
        for key in ("rows", "cols"):
            value = message.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10000:
                raise ValueError(f"resize: {key} must be an integer from 1 to 10000, got {value!r}")
    elif kind not in ("ping", "restart"):
        raise ValueError(f"unknown message type {kind!r}; expected stdin, resize, ping or restart")
    return message
