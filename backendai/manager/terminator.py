"""Driving TERMINATING kernels to their end, releasing their allocations.

Claimed with a lease like launches.  The agent's destroy is idempotent, so a
retry after a lost answer is harmless.  A kernel whose agent does not confirm
within ``terminate_timeout`` (agent lost, engine wedged) is forced to its end
and its resources released, with a warning: it never stays TERMINATING.  If
its container turns up later, the agent monitor has the agent remove it.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import sqlalchemy as sa
import trio

from ..db.tables import agents, kernels
from ..errors import RPCError
from . import repo
from .context import ManagerContext, publish_changes
from .repo import StatusChange
from .states import final_kernel_status

__all__ = ["finish_kernel", "serve_terminator"]

log = logging.getLogger(__name__)
MAX_CONCURRENT = 64


def finish_kernel(
    conn: sa.Connection,
    kernel_id: str,
    session_id: str,
    reason: str | None,
    exit_code: int | None,
    now: float,
) -> StatusChange | None:
    """TERMINATING -> TERMINATED/ERROR, release the allocation, re-derive the session."""
    moved = repo.set_kernels(
        conn,
        kernels.c.id == kernel_id,
        ["TERMINATING"],
        final_kernel_status(reason),
        reason=reason,
        keep_reason=True,
        now=now,
        exit_code=exit_code,
    )
    repo.release_allocation(conn, [kernel_id], now)
    return repo.refresh_session(conn, session_id, now) if moved else None


def _claim(conn: sa.Connection, me: str, now: float, lease: float) -> list[dict[str, Any]]:
    q = (
        sa.select(kernels, agents.c.rpc_addr)
        .outerjoin(agents, agents.c.id == kernels.c.agent_id)
        .where(
            kernels.c.status == "TERMINATING",
            sa.or_(kernels.c.lease_until.is_(None), kernels.c.lease_until < now),
        )
        .order_by(kernels.c.status_changed)
        .limit(MAX_CONCURRENT)
    )
    claimed = []
    for row in list(conn.execute(q).mappings()):
        ok = conn.execute(
            kernels.update()
            .where(
                kernels.c.id == row["id"],
                kernels.c.status == "TERMINATING",
                sa.or_(kernels.c.lease_until.is_(None), kernels.c.lease_until < now),
            )
            .values(lease_owner=me, lease_until=now + lease)
        ).rowcount
        if ok:
            claimed.append(dict(row))
    return claimed


async def _terminate(ctx: ManagerContext, k: dict[str, Any], limiter: trio.CapacityLimiter) -> None:
    cfg = ctx.config.manager
    exit_code: int | None = None
    done = True
    async with limiter:
        if k["agent_id"] is not None and k["rpc_addr"]:
            try:
                with trio.fail_after(max(1.0, cfg.lease_timeout - 1)):
                    result = await ctx.agents.destroy_kernel(k["rpc_addr"], k["id"])
                exit_code = result.get("exit_code")
            except (RPCError, trio.TooSlowError) as e:
                overdue = time.time() - k["status_changed"] > cfg.terminate_timeout
                forced = k["status_info"] == "force-terminated"
                done = overdue or forced
                log.warning(
                    "destroying kernel %s on agent %s failed: %s; %s",
                    k["id"],
                    k["agent_id"],
                    e or "timed out",
                    "giving up and releasing its resources" if done else "will retry",
                )

    def outcome(c: sa.Connection) -> StatusChange | None:
        now = time.time()
        if done:
            return finish_kernel(c, k["id"], k["session_id"], k["status_info"], exit_code, now)
        # Retry after a short back-off rather than at once.
        c.execute(
            kernels.update()
            .where(kernels.c.id == k["id"], kernels.c.lease_owner == ctx.manager_id)
            .values(lease_until=now + 1.0)
        )
        return None

    change = await ctx.db.run(outcome)
    await publish_changes(ctx, [change])


async def serve_terminator(
    ctx: ManagerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    cfg = ctx.config.manager
    limiter = trio.CapacityLimiter(MAX_CONCURRENT)
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            try:
                claimed = await ctx.db.run(
                    lambda c: _claim(c, ctx.manager_id, time.time(), cfg.lease_timeout)
                )
            except Exception:
                log.exception(
                    "claiming terminations failed; retrying in %.1f s", cfg.reconcile_interval
                )
                claimed = []
            for k in claimed:
                nursery.start_soon(_terminate, ctx, k, limiter)
            await ctx.terminate.wait(
                min(cfg.reconcile_interval, 1.0) if claimed else cfg.reconcile_interval
            )
