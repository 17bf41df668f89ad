"""Ending sessions that outlive their keypair policy: ``max_session_lifetime``, ``idle_timeout``.

A RUNNING session whose keypair's policy sets a lifetime is terminated once it
has run that long since its first kernel started (reason ``max-session-lifetime``);
one idle that long (no code execution, file or stream use since it started or
since its last such use) is terminated with reason ``idle-timeout``.  The check
runs every ``reconcile_interval``; the database is the only state, so any
manager may do it and two doing it at once end the session once.
"""

from __future__ import annotations

import logging
import time
from typing import NoReturn

import sqlalchemy as sa
import trio

from ..db.tables import kernels, keypair_resource_policies, keypairs, sessions
from ..errors import BackendAIError
from .context import ManagerContext
from .session_ops import destroy_session

__all__ = ["overdue", "serve_policy_reaper"]

log = logging.getLogger(__name__)


def overdue(
    now: float,
    started_at: float,
    last_activity: float | None,
    idle_timeout: float,
    max_lifetime: float,
) -> str | None:
    """The reason to end a running session now, or None (a limit of 0 is none)."""
    if max_lifetime > 0 and now - started_at >= max_lifetime:
        return "max-session-lifetime"
    idle_since = max(started_at, last_activity or started_at)
    if idle_timeout > 0 and now - idle_since >= idle_timeout:
        return "idle-timeout"
    return None


def _due(conn: sa.Connection, now: float) -> list[tuple[str, str, str, str]]:
    """(session id, name, reason, detail) of the RUNNING sessions past a policy limit."""
    rows = conn.execute(
        sa.select(
            sessions.c.id,
            sessions.c.name,
            sessions.c.last_activity,
            sa.select(sa.func.min(kernels.c.started_at))
            .where(kernels.c.session_id == sessions.c.id)
            .scalar_subquery()
            .label("started_at"),
            keypair_resource_policies.c.name.label("policy"),
            keypair_resource_policies.c.idle_timeout,
            keypair_resource_policies.c.max_session_lifetime,
        )
        .join(keypairs, keypairs.c.access_key == sessions.c.access_key)
        .join(
            keypair_resource_policies,
            keypair_resource_policies.c.name == keypairs.c.resource_policy,
        )
        .where(
            sessions.c.status == "RUNNING",
            sa.or_(
                keypair_resource_policies.c.idle_timeout > 0,
                keypair_resource_policies.c.max_session_lifetime > 0,
            ),
        )
    )
    due = []
    for r in rows:
        if r.started_at is None:
            continue
        reason = overdue(now, r.started_at, r.last_activity, r.idle_timeout, r.max_session_lifetime)
        if reason is not None:
            limit = r.idle_timeout if reason == "idle-timeout" else r.max_session_lifetime
            due.append(
                (r.id, r.name, reason, f"{limit} s under keypair resource policy {r.policy!r}")
            )
    return due


async def serve_policy_reaper(
    ctx: ManagerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    period = ctx.config.manager.reconcile_interval
    task_status.started()
    while True:
        try:
            due = await ctx.db.run(lambda c: _due(c, time.time()))
        except BackendAIError:
            log.exception("checking session lifetimes failed; retrying in %.1f s", period)
            due = []
        for session_id, name, reason, detail in due:
            log.info("ending session %s (%s): %s, %s", name, session_id, reason, detail)
            try:
                await destroy_session(ctx, session_id, forced=False, reason=reason)
            except BackendAIError:
                log.exception("ending session %s (%s) failed; retrying later", name, session_id)
        await trio.sleep(period)
