"""Websocket streams of a session: code execution and a terminal (pty).

``/stream/session/{id}/execute``: the first message is ``{mode, code, options}``;
results follow as they come; on ``waiting-input`` the client answers with a raw
string; the stream ends at a finished status.  A client that goes away mid-run
has its run interrupted.  ``/stream/session/{id}/pty`` is spliced to the
agent's pty websocket, message for message.
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
from .exec_api import batch_options, execute_step
from .kernel_access import KernelTarget, session_target
from .session_api import owner_scope

__all__ = ["MESSAGE_BYTES", "WS_FLUSH_SECONDS", "add_stream_routes", "split_result"]

log = logging.getLogger(__name__)
# Streams forward output promptly: each step returns after this much collection at most.
WS_FLUSH_SECONDS = 0.2
_FINAL = ("finished", "exec-timeout")
_INTERRUPT_TIMEOUT = 5.0
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


def add_stream_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.websocket("/stream/session/<ref>/execute")
    async def stream_execute(ref: str) -> None:
        target = await _target(ctx, ref)
        await websocket.accept()
        run_id = secrets.token_hex(8)
        finished = False
        try:
            mode, code, options = _first_message(await websocket.receive())
            while True:
                result = await execute_step(
                    ctx, target, mode, run_id, code, options, WS_FLUSH_SECONDS
                )
                if result["console"] or result["status"] != "continued":
                    for message in split_result(result):
                        await websocket.send(json.dumps(message))
                if result["status"] in _FINAL:
                    finished = True
                    break
                if result["status"] == "waiting-input":
                    answer = await websocket.receive()
                    mode, code = "input", answer if isinstance(answer, str) else answer.decode()
                else:
                    mode, code = "continue", ""
                options = {}
        except APIError as e:
            finished = True
            await websocket.send(json.dumps({"status": "error", "msg": str(e)}))
        finally:
            if not finished:
                with trio.move_on_after(_INTERRUPT_TIMEOUT, shield=True):
                    try:
                        await ctx.agents.interrupt(target.agent_addr, target.kernel_id)
                        log.info(
                            "client left run %s of session %s: interrupted it",
                            run_id,
                            target.session_name,
                        )
                    except RPCError as e:
                        log.warning("could not interrupt the abandoned run %s: %s", run_id, e)

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
