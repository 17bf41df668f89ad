"""Websocket streams of a session: code execution and a terminal (pty).

``/stream/session/{id}/execute``: the first message is ``{mode, code, options}``;
results follow as they come; on ``waiting-input`` the client answers with a raw
string; the run ends at a finished status, and the socket then takes the next
run's first message (Backend.AI's clients close it instead).  Runs go over a
kept-alive execute channel to the agent (:mod:`.exec_channels`), which relays
the kernel runner's frames as they come.  A client that goes away mid-run has
its run interrupted (its channel closes).  ``/stream/session/{id}/pty`` is
spliced to the agent's pty websocket, message for message.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import trio
import trio_websocket
from quart import g, websocket
from quart_trio import QuartTrio

from ..errors import APIError, InvalidAPIParameters, RPCError
from .api import Caller
from .context import ManagerContext
from .exec_api import batch_options, result_json
from .kernel_access import ACTIVITY_WRITE_INTERVAL, KernelTarget, api_error, session_target
from .session_api import owner_scope

__all__ = ["MESSAGE_BYTES", "add_stream_routes", "fold_frames", "split_result"]

log = logging.getLogger(__name__)
# Console bytes per websocket message (JSON-encoded), give or take one piece.
MESSAGE_BYTES = 256 * 1024
# Output strings are cut into pieces of this many characters (a piece encodes to
# at most six bytes a character), so no message exceeds MESSAGE_BYTES + 6 * _PIECE.
_PIECE = 32 * 1024
_CONTINUED: dict[str, Any] = {"status": "continued", "exitCode": None, "options": {}, "files": []}


def split_result(result: dict[str, Any], limit: int = MESSAGE_BYTES) -> list[dict[str, Any]]:
    """*result* as one or more messages whose console encodes to about *limit* bytes each."""
    pieces: list[tuple[list[Any], int]] = []
    for item in result.get("console") or []:
        kind, data = item[0], item[1]
        if isinstance(data, str) and len(data) > _PIECE:
            for i in range(0, len(data), _PIECE):
                part = [kind, data[i : i + _PIECE]]
                pieces.append((part, len(json.dumps(part))))
        else:
            pieces.append((item, len(json.dumps(item))))
    total = sum(size for _, size in pieces)
    if total <= limit:
        return [result]
    messages: list[dict[str, Any]] = []
    console: list[Any] = []
    size = 0
    for piece, piece_size in pieces:
        if console and size + piece_size > limit:
            messages.append({**result, **_CONTINUED, "console": console})
            console, size = [], 0
        console.append(piece)
        size += piece_size
    messages.append({**result, "console": console})
    return messages


def _first_message(raw: str | bytes) -> tuple[str, str, dict[str, Any]]:
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidAPIParameters(
            f"the first message must be JSON {{mode, code, options}}: {e}"
        ) from None
    if not isinstance(msg, dict):
        raise InvalidAPIParameters("the first message must be a JSON object {mode, code, options}")
    mode = msg.get("mode", "query")
    if mode not in ("query", "batch"):
        raise InvalidAPIParameters(f"mode: invalid value {mode!r}; expected 'query' or 'batch'")
    code = msg.get("code") or ""
    options = msg.get("options") or {}
    if not isinstance(code, str) or not isinstance(options, dict):
        raise InvalidAPIParameters("code must be a string and options an object")
    return mode, code, batch_options(options) if mode == "batch" else options


async def _target(ctx: ManagerContext, ref: str) -> KernelTarget:
    caller: Caller = g.caller
    return await session_target(ctx, ref, owner_scope(caller))


def fold_frames(
    run_id: str, frames: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], APIError | None, bool]:
    """An agent channel's frames as API results: (results, the error that ended the run,
    whether the run ended).  Console items ride with the status that follows them."""
    results: list[dict[str, Any]] = []
    console: list[list[Any]] = []

    def emit(status: str, **extra: Any) -> None:
        nonlocal console
        results.append(result_json(run_id, {"status": status, "console": console, **extra}))
        console = []

    for frame in frames:
        op = frame.get("op")
        if op == "console":
            for item in frame.get("items") or []:
                if item[0] in ("stdout", "stderr") and console and console[-1][0] == item[0]:
                    console[-1] = [item[0], console[-1][1] + item[1]]
                else:
                    console.append(item)
        elif op == "waiting-input":
            emit("waiting-input", options={"is_password": bool(frame.get("is_password"))})
        elif op == "step":
            emit(str(frame.get("status")), exit_code=frame.get("exit_code"))
        elif op == "finished":
            emit(
                str(frame.get("status")),
                exit_code=frame.get("exit_code"),
                files=frame.get("files") or [],
            )
            return results, None, True
        elif op == "error":
            if console:
                emit("continued")
            status = frame.get("status")
            e = RPCError(
                str(frame.get("message")),
                status=status if isinstance(status, int) else 500,
                detail=str(frame.get("message")),
            )
            return results, api_error(e, f"executing run {run_id}"), True
    if console:
        emit("continued")
    return results, None, False


async def _relay_run(
    ctx: ManagerContext, target: KernelTarget, mode: str, code: str, options: dict[str, Any]
) -> None:
    """One run over a kept-alive agent channel, its results sent as they come; an error
    that ends the run is raised (as an APIError)."""
    run_id = secrets.token_hex(8)
    execute = {
        "op": "execute",
        "kernel_id": target.kernel_id,
        "run_id": run_id,
        "mode": mode,
        "code": code,
        "options": options,
    }
    what = f"executing in session {target.session_name!r}"
    try:
        async with ctx.agents.exec.run(target.agent_addr, execute) as channel:
            while True:
                results, error, ended = fold_frames(run_id, await channel.receive())
                for result in results:
                    for message in split_result(result):
                        await websocket.send(json.dumps(message))
                if ended:
                    channel.reusable = True
                    if error is not None:
                        raise error
                    return
                if results and results[-1]["status"] == "waiting-input":
                    answer = await websocket.receive()
                    text = answer if isinstance(answer, str) else answer.decode(errors="replace")
                    await channel.send({"op": "input", "data": text})
    except RPCError as e:
        raise api_error(e, what) from e


def add_stream_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.websocket("/stream/session/<ref>/execute")
    async def stream_execute(ref: str) -> None:
        """Runs, one after another: Backend.AI's clients close the socket after the first
        one finishes; a client that keeps it open saves a handshake per run."""
        target = await _target(ctx, ref)
        looked_up = trio.current_time()
        await websocket.accept()
        while True:
            raw = await websocket.receive()
            if trio.current_time() - looked_up >= ACTIVITY_WRITE_INTERVAL:
                # Still running?  Also notes the session's activity.
                target = await _target(ctx, ref)
                looked_up = trio.current_time()
            try:
                mode, code, options = _first_message(raw)
                await _relay_run(ctx, target, mode, code, options)
            except APIError as e:
                await websocket.send(json.dumps({"status": "error", "msg": str(e)}))

    @app.websocket("/stream/session/<ref>/pty")
    async def stream_pty(ref: str) -> None:
        target = await _target(ctx, ref)
        url, headers = ctx.agents.websocket(
            target.agent_addr, f"/v1/kernels/{target.kernel_id}/pty"
        )
        try:
            async with trio_websocket.open_websocket_url(url, extra_headers=headers) as upstream:
                await websocket.accept()
                async with trio.open_nursery() as nursery:

                    async def up() -> None:
                        while True:
                            await upstream.send_message(await websocket.receive())

                    async def down() -> None:
                        try:
                            while True:
                                await websocket.send(await upstream.get_message())
                        except trio_websocket.ConnectionClosed:
                            pass
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(up)
                    nursery.start_soon(down)
        except (trio_websocket.HandshakeError, OSError) as e:
            log.warning(
                "terminal of session %s: agent websocket failed: %s", target.session_name, e
            )
            await websocket.send(
                json.dumps({"type": "error", "msg": f"the agent's terminal is unavailable: {e}"})
            )
