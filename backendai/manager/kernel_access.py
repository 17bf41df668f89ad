"""Reaching a session's main kernel on its agent, and agent refusals as API errors."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from quart import g

from ..db.tables import agents, kernels, sessions
from ..errors import (
    APIError,
    Conflict,
    InvalidAPIParameters,
    NotFound,
    PayloadTooLarge,
    RPCError,
    ServerError,
    SessionNotFound,
)
from .api import Caller
from .context import ManagerContext
from .repo import find_session
from .session_api import owner_scope

__all__ = ["KernelTarget", "api_error", "caller_target", "main_kernel", "session_target"]


@dataclass(frozen=True)
class KernelTarget:
    session_id: str
    session_name: str
    kernel_id: str
    agent_addr: str


# Activity older than this is written again; more often would add a write per request.
ACTIVITY_WRITE_INTERVAL = 5.0


def _main_kernel_tx(c: sa.Connection, session: Any) -> KernelTarget:
    """In a transaction: the RUNNING main kernel of *session* (a row), noting activity."""
    if session["status"] != "RUNNING":
        raise Conflict(
            f"session {session['name']!r} is {session['status']}; code and files are reachable "
            "only while it is RUNNING"
        )
    row = c.execute(
        sa.select(kernels.c.id, agents.c.rpc_addr)
        .join(agents, agents.c.id == kernels.c.agent_id)
        .where(
            kernels.c.session_id == session["id"],
            kernels.c.cluster_role == "main",
            kernels.c.status == "RUNNING",
        )
    ).first()
    if row is None:
        raise Conflict(f"session {session['name']!r} has no running main kernel")
    # Code, files and streams are what keeps a session from idling out; idle
    # timeouts are minutes, so a few seconds of staleness spare a write per call.
    now = time.time()
    last = session.get("last_activity")
    if last is None or now - last >= ACTIVITY_WRITE_INTERVAL:
        c.execute(sessions.update().where(sessions.c.id == session["id"]).values(last_activity=now))
    return KernelTarget(session["id"], session["name"], row[0], row[1])


async def main_kernel(ctx: ManagerContext, session: dict[str, Any]) -> KernelTarget:
    """The RUNNING main kernel of *session*; a clear error when it has none."""
    return await ctx.db.run(lambda c: _main_kernel_tx(c, session))


async def session_target(ctx: ManagerContext, ref: str, access_key: str | None) -> KernelTarget:
    """The main kernel of the caller's session *ref*, found in one transaction.

    The same as ``main_kernel(ctx, await resolve_session(...))``, with one
    database round trip instead of two on the path of every execute step.
    """

    def _find(c: sa.Connection) -> KernelTarget:
        session = find_session(c, ref, access_key)
        if session is None:
            raise SessionNotFound(f"no session {ref!r} found")
        return _main_kernel_tx(c, session)

    return await ctx.db.run(_find)


async def caller_target(ctx: ManagerContext, ref: str) -> KernelTarget:
    """The main kernel of the calling user's session *ref* (in a request or websocket)."""
    caller: Caller = g.caller
    return await session_target(ctx, ref, owner_scope(caller))


def api_error(e: RPCError, what: str) -> APIError:
    """An agent's refusal, as the error the API client should see."""
    detail = e.detail
    if e.status == 400:
        return InvalidAPIParameters(f"{what}: {detail}")
    if e.status == 404:
        return NotFound(f"{what}: {detail}")
    if e.status == 409:
        return Conflict(f"{what}: {detail}")
    if e.status == 413:
        return PayloadTooLarge(f"{what}: {detail}")
    return ServerError(f"{what}: {e}")
