"""Reaching a session's main kernel on its agent, and agent refusals as API errors."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..db.tables import agents, kernels, sessions
from ..errors import (
    APIError,
    Conflict,
    InvalidAPIParameters,
    NotFound,
    PayloadTooLarge,
    RPCError,
    ServerError,
)
from .context import ManagerContext

__all__ = ["KernelTarget", "api_error", "main_kernel"]


@dataclass(frozen=True)
class KernelTarget:
    session_id: str
    session_name: str
    kernel_id: str
    agent_addr: str


async def main_kernel(ctx: ManagerContext, session: dict[str, Any]) -> KernelTarget:
    """The RUNNING main kernel of *session*; a clear error when it has none."""
    if session["status"] != "RUNNING":
        raise Conflict(
            f"session {session['name']!r} is {session['status']}; code and files are reachable "
            "only while it is RUNNING"
        )

    def _find(c: sa.Connection) -> tuple[str, str] | None:
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
            return None
        # Code, files and streams are what keeps a session from idling out.
        c.execute(
            sessions.update()
            .where(sessions.c.id == session["id"])
            .values(last_activity=time.time())
        )
        return row[0], row[1]

    found = await ctx.db.run(_find)
    if found is None:
        raise Conflict(f"session {session['name']!r} has no running main kernel")
    return KernelTarget(session["id"], session["name"], found[0], found[1])


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
