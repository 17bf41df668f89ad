"""Driving SCHEDULED kernels to RUNNING through their agents.

A manager claims a kernel with a lease (``lease_owner``, ``lease_until``) in a
conditional update, renews it while the agent works, and writes the outcome.
A launch whose manager died keeps its lease only until ``lease_timeout``; then
any manager re-claims it and asks the agent again, which is safe because the
agent's create is idempotent by kernel id.  After ``max_attempts`` claims, or
on an error that retrying cannot fix, the whole session fails
(``failed-to-start``): no kernel stays in a launching state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

import sqlalchemy as sa
import trio

from ..db.tables import agents, kernels, sessions
from ..errors import RPCError
from . import catalog, repo
from .context import ManagerContext, publish_changes
from .pulls import launch_failure_reason
from .repo import StatusChange
from .states import LAUNCHING

__all__ = ["fail_session", "serve_launcher"]

log = logging.getLogger(__name__)
MAX_CONCURRENT_LAUNCHES = 64


def fail_session(
    conn: sa.Connection, session_id: str, reason: str, now: float
) -> StatusChange | None:
    """Send every live kernel of a session away with *reason* (its launch failed)."""
    repo.set_kernels(
        conn, kernels.c.session_id == session_id, ["PENDING"], "CANCELLED", reason=reason, now=now
    )
    repo.set_kernels(
        conn,
        kernels.c.session_id == session_id,
        [*LAUNCHING, "RUNNING"],
        "TERMINATING",
        reason=reason,
        now=now,
        lease_owner=None,
        lease_until=None,
    )
    return repo.refresh_session(conn, session_id, now)


def _claim(
    conn: sa.Connection, me: str, now: float, lease: float, max_attempts: int
) -> tuple[list[dict[str, Any]], list[StatusChange | None]]:
    q = (
        sa.select(
            kernels,
            agents.c.rpc_addr,
            agents.c.status.label("agent_status"),
            sessions.c.environ,
            sessions.c.mounts,
            sessions.c.startup_command,
            sessions.c.session_type,
        )
        .join(agents, agents.c.id == kernels.c.agent_id)
        .join(sessions, sessions.c.id == kernels.c.session_id)
        .where(
            kernels.c.status.in_(LAUNCHING),
            sa.or_(kernels.c.lease_until.is_(None), kernels.c.lease_until < now),
        )
        .order_by(kernels.c.created_at)
        .limit(MAX_CONCURRENT_LAUNCHES)
    )
    claimed: list[dict[str, Any]] = []
    changes: list[StatusChange | None] = []
    for row in list(conn.execute(q).mappings()):
        if row["attempts"] >= max_attempts or row["agent_status"] != "ALIVE":
            why = (
                f"after {row['attempts']} attempts"
                if row["attempts"] >= max_attempts
                else f"agent {row['agent_id']} is {row['agent_status']}"
            )
            log.warning(
                "kernel %s of session %s failed to start (%s)", row["id"], row["session_id"], why
            )
            changes.append(fail_session(conn, row["session_id"], "failed-to-start", now))
            continue
        new_status = "PREPARING" if row["status"] == "SCHEDULED" else row["status"]
        ok = conn.execute(
            kernels.update()
            .where(
                kernels.c.id == row["id"],
                kernels.c.status == row["status"],
                sa.or_(kernels.c.lease_until.is_(None), kernels.c.lease_until < now),
            )
            .values(
                status=new_status,
                status_changed=now if new_status != row["status"] else row["status_changed"],
                lease_owner=me,
                lease_until=now + lease,
                attempts=row["attempts"] + 1,
            )
        ).rowcount
        if not ok:
            continue
        if new_status != row["status"]:
            repo.record(conn, row["session_id"], row["id"], new_status, None, None, now)
            changes.append(repo.refresh_session(conn, row["session_id"], now))
        claimed.append(dict(row))
    return claimed, changes


def _agent_spec(k: dict[str, Any]) -> dict[str, Any]:
    return {
        "kernel_id": k["id"],
        "session_id": k["session_id"],
        "image": k["image"],
        "slots": k["requested_slots"],
        "cluster_role": k["cluster_role"],
        "cluster_idx": k["cluster_idx"],
        "environ": k["environ"] or {},
        "mounts": k["mounts"] or [],
        "startup_command": k["startup_command"],
    }


async def _renew_lease(ctx: ManagerContext, kernel_id: str) -> NoReturn:
    lease = ctx.config.manager.lease_timeout
    while True:
        await trio.sleep(lease / 3)
        await ctx.db.run(
            lambda c: c.execute(
                kernels.update()
                .where(kernels.c.id == kernel_id, kernels.c.lease_owner == ctx.manager_id)
                .values(lease_until=time.time() + lease)
            )
        )


async def _launch(ctx: ManagerContext, k: dict[str, Any], limiter: trio.CapacityLimiter) -> None:
    cfg = ctx.config.manager
    kid = k["id"]
    outcome: Callable[[sa.Connection], list[StatusChange | None]]
    spec = _agent_spec(k)
    limit = cfg.launch_timeout
    async with limiter, trio.open_nursery() as nursery:
        nursery.start_soon(_renew_lease, ctx, kid)
        try:
            # An image from a registry may need a pull first: that gets pull_timeout more.
            source = await ctx.db.run(lambda c: catalog.pull_source(c, k["image"]))
            if source is not None:
                spec.update(registry=source.to_wire(), pull_timeout=cfg.pull_timeout)
                limit += cfg.pull_timeout
            with trio.fail_after(limit):
                info = await ctx.agents.create_kernel(k["rpc_addr"], spec)
        except (RPCError, trio.TooSlowError) as e:
            permanent = isinstance(e, RPCError) and e.status in (400, 404, 412, 422)
            reason = launch_failure_reason(e)
            if isinstance(e, trio.TooSlowError):
                msg = f"agent {k['agent_id']} did not start it within {limit:.0f} s"
            else:
                msg = str(e)
            log.warning("launching kernel %s (attempt %d): %s", kid, k["attempts"] + 1, msg)

            def outcome(c: sa.Connection) -> list[StatusChange | None]:
                now = time.time()
                if permanent or k["attempts"] + 1 >= cfg.max_attempts:
                    repo.record(c, k["session_id"], kid, "ERROR", reason, msg[:1000], now)
                    return [fail_session(c, k["session_id"], reason, now)]
                # Release the lease at once so the next pass retries.
                c.execute(
                    kernels.update()
                    .where(kernels.c.id == kid, kernels.c.lease_owner == ctx.manager_id)
                    .values(lease_owner=None, lease_until=None)
                )
                repo.record(c, k["session_id"], kid, k["status"], "retry", msg[:1000], now)
                return []
        else:

            def outcome(c: sa.Connection) -> list[StatusChange | None]:
                now = time.time()
                repo.set_kernels(
                    c,
                    kernels.c.id == kid,
                    LAUNCHING,
                    "RUNNING",
                    now=now,
                    container_id=info.get("backend_id"),
                    started_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
                return [repo.refresh_session(c, k["session_id"], now)]

        finally:
            nursery.cancel_scope.cancel()
    changes = await ctx.db.run(outcome)
    await publish_changes(ctx, changes)
    ctx.launch.set()


async def serve_launcher(
    ctx: ManagerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    cfg = ctx.config.manager
    limiter = trio.CapacityLimiter(MAX_CONCURRENT_LAUNCHES)
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            try:
                claimed, changes = await ctx.db.run(
                    lambda c: _claim(
                        c, ctx.manager_id, time.time(), cfg.lease_timeout, cfg.max_attempts
                    )
                )
            except Exception:
                log.exception(
                    "claiming launches failed; retrying in %.1f s", cfg.reconcile_interval
                )
                claimed, changes = [], []
            await publish_changes(ctx, changes)
            for k in claimed:
                nursery.start_soon(_launch, ctx, k, limiter)
            await ctx.launch.wait(cfg.reconcile_interval)
