"""``GET /events/session``: session lifecycle events as server-sent events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Response, g, request
from quart_trio import QuartTrio

from ..bus import Event
from ..errors import InvalidAPIParameters
from .api import Caller
from .context import ManagerContext
from .session_ops import resolve_session
from .states import event_name

__all__ = ["add_event_routes", "format_sse"]

log = logging.getLogger(__name__)
KEEPALIVE_INTERVAL = 15.0
_TERMINAL_EVENTS = {"session_terminated", "session_cancelled", "session_failure"}


def format_sse(event: str, data: Any) -> bytes:
    payload = json.dumps(data)
    return f"event: {event}\ndata: {payload}\n\n".encode()


def add_event_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.route("/events/session", methods=["GET"])
    async def session_events() -> Response:
        caller: Caller = g.caller
        scope = request.args.get("scope", "*")
        if scope not in ("session", "kernel", "*"):
            raise InvalidAPIParameters(
                f"scope: invalid value {scope!r}; expected 'session', 'kernel' or '*'"
            )
        ref = (
            request.args.get("sessionId")
            or request.args.get("sessionName")
            or request.args.get("name")
        )
        owner = caller.owner_access_key  # ownerAccessKey=, checked at authentication
        session_id: str | None = None
        if ref and ref != "*":
            session_id = (await resolve_session(ctx, ref, owner))["id"]

        def wanted(ev: Event) -> bool:
            if not ev.name.startswith("session_") and scope == "session":
                return False
            if session_id is not None:
                return bool(ev.data.get("sessionId") == session_id)
            return (caller.is_superadmin and owner == caller.access_key) or ev.data.get(
                "ownerAccessKey"
            ) == owner

        async def stream() -> AsyncIterator[bytes]:
            yield b": backendai session events\n\n"
            async with ctx.bus.subscribe() as events:
                if session_id is not None:
                    # Subscribed first, then checked: an end that came before is not missed.
                    s = await resolve_session(ctx, session_id, None)
                    if s["status"] in ("TERMINATED", "CANCELLED", "ERROR"):
                        data = {
                            "sessionId": s["id"],
                            "sessionName": s["name"],
                            "ownerAccessKey": s["access_key"],
                            "status": s["status"],
                            "reason": s["status_info"] or "",
                            "exitCode": s["exit_code"],
                        }
                        yield format_sse(event_name("session", s["status"]), data)
                        yield format_sse("server_close", {})
                        return
                while True:
                    with trio.move_on_after(KEEPALIVE_INTERVAL) as idle:
                        ev = await events.receive()
                    if idle.cancelled_caught:
                        yield b": keepalive\n\n"
                        continue
                    if not wanted(ev):
                        continue
                    yield format_sse(ev.name, dict(ev.data))
                    if session_id is not None and ev.name in _TERMINAL_EVENTS:
                        # Tells the official client not to reconnect.
                        yield format_sse("server_close", {})
                        return

        resp = Response(stream(), content_type="text/event-stream")
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["X-Accel-Buffering"] = "no"
        resp.timeout = None
        return resp
