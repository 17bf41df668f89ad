"""Websocket streams of a session: code execution (:mod:`.exec_stream`) and a terminal.

``/stream/session/{id}/pty`` is spliced to the agent's pty websocket, message
for message.
"""

from __future__ import annotations

import json
import logging

import trio
import trio_websocket
from quart import websocket
from quart_trio import QuartTrio

from .context import ManagerContext
from .exec_stream import serve_execute_stream
from .kernel_access import caller_target

__all__ = ["add_stream_routes"]

log = logging.getLogger(__name__)


def add_stream_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.websocket("/stream/session/<ref>/execute")
    async def stream_execute(ref: str) -> None:
        """Runs, one after another: Backend.AI's clients close the socket after the first
        one finishes; a client that keeps it open saves a handshake per run."""
        await serve_execute_stream(ctx, ref)

    @app.websocket("/stream/session/<ref>/pty")
    async def stream_pty(ref: str) -> None:
        target = await caller_target(ctx, ref)
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
