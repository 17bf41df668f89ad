"""Tunnels to apps through the manager, for the official client's ``backend.ai app``.

``/stream/session/{id}/tcpproxy?app=NAME`` and ``/httpproxy?app=NAME``
(websockets, signed like any API call, so only the session's owner gets in):
the app is started if it is not running (query ``envs`` and ``arguments`` as
JSON text, as the client sends them), then bytes flow both ways as binary
messages between the websocket and one TCP connection to the app.  The client
listens locally and opens one tunnel per local connection.
"""

from __future__ import annotations

import contextlib
import json
import logging

import trio
from quart import websocket
from quart_trio import QuartTrio

from ..errors import APIError, InvalidAPIParameters, RPCError
from ..netproxy import forward_key, open_app_stream
from .apps_api import session_apps, start_request
from .context import ManagerContext
from .kernel_access import api_error, main_kernel

__all__ = ["add_tunnel_routes"]

log = logging.getLogger(__name__)
_CHUNK = 65536


async def _tunnel(ctx: ManagerContext, ref: str) -> None:
    name = websocket.args.get("app", "")
    try:
        session, defs = await session_apps(ctx, ref)
        sdef = defs.get(name)
        if sdef is None:
            offered = ", ".join(sorted(defs)) or "none"
            raise InvalidAPIParameters(
                f"app: invalid value {name!r}; the session offers: {offered}"
            )
        target = await main_kernel(ctx, session)
        body = {k: websocket.args[k] for k in ("envs", "arguments") if k in websocket.args}
        try:
            started = await ctx.agents.start_service(
                target.agent_addr, target.kernel_id, start_request(sdef, body, session["id"])
            )
        except RPCError as e:
            raise api_error(e, f"starting app {name!r} in session {session['name']!r}") from e
        host = target.agent_addr.rsplit(":", 1)[0].strip("[]")
        forwarded = bool(started.get("forwarded"))  # its forward admits its app's route only
        app_stream = await open_app_stream(
            host,
            int(started["port"]),
            forward_key=forward_key(ctx.config.cluster.secret.reveal()) if forwarded else None,
            route=f"{session['id']}/{sdef.name}",
        )
    except (APIError, OSError, trio.BrokenResourceError) as e:
        await websocket.accept()
        await websocket.send(json.dumps({"status": "error", "msg": str(e)}))
        await websocket.close(1011, str(e)[:120])
        return
    await websocket.accept()
    async with app_stream, trio.open_nursery() as nursery:

        async def up() -> None:
            while True:
                data = await websocket.receive()
                await app_stream.send_all(data if isinstance(data, bytes) else data.encode())

        async def down() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while data := await app_stream.receive_some(_CHUNK):
                    await websocket.send(data)
            nursery.cancel_scope.cancel()  # the app closed: end the tunnel

        nursery.start_soon(up)
        nursery.start_soon(down)


def add_tunnel_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.websocket("/stream/session/<ref>/tcpproxy")
    async def tcpproxy(ref: str) -> None:
        await _tunnel(ctx, ref)

    @app.websocket("/stream/session/<ref>/httpproxy")
    async def httpproxy(ref: str) -> None:
        await _tunnel(ctx, ref)
