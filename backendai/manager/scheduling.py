"""The scheduling loop: PENDING sessions get agents and allocation rows.

One pass is one database transaction: it locks the alive agents (``FOR
UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers), derives
occupancy from live allocation rows, asks the pure placement code, and writes
allocations and the SCHEDULED state together.  Two managers therefore never
double-allocate.  The loop wakes on hints and every ``reconcile_interval``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import NoReturn

import sqlalchemy as sa
import trio

from ..db.tables import agents, allocations, kernels, resource_groups, session_history, sessions
from ..sched import (
    AgentSnapshot,
    KernelRequest,
    ResourceSlots,
    get_agent_selector,
    place_session,
)
from . import repo
from .context import ManagerContext, publish_changes
from .repo import StatusChange

__all__ = ["schedule_once", "serve_scheduler"]

log = logging.getLogger(__name__)


def _agent_snapshots(conn: sa.Connection) -> list[AgentSnapshot]:
    rows = list(
        conn.execute(
            sa.select(agents)
            .where(agents.c.status == "ALIVE")
            .order_by(agents.c.id)
            .with_for_update()
        ).mappings()
    )
    occupied: dict[str, ResourceSlots] = defaultdict(ResourceSlots)
    live = sa.select(allocations.c.agent_id, allocations.c.slots).where(
        allocations.c.released_at.is_(None)
    )
    for agent_id, slots in conn.execute(live):
        occupied[agent_id] = occupied[agent_id] + ResourceSlots.from_json(slots)
    return [
        AgentSnapshot(
            id=r["id"],
            resource_group=r["resource_group"],
            architecture=r["architecture"],
            capacity=ResourceSlots.from_json(r["capacity"]),
            occupied=occupied[r["id"]],
            images=frozenset(r["images"]),
        )
        for r in rows
    ]


def _note_pending_reason(conn: sa.Connection, session_id: str, reason: str, now: float) -> None:
    last = conn.execute(
        sa.select(session_history.c.detail)
        .where(session_history.c.session_id == session_id)
        .order_by(session_history.c.id.desc())
        .limit(1)
    ).scalar()
    if last != reason:
        repo.record(conn, session_id, None, "PENDING", None, reason, now)


def schedule_once(conn: sa.Connection, now: float, pending_timeout: float) -> list[StatusChange]:
    changes: list[StatusChange | None] = []
    if pending_timeout > 0:
        expired = conn.execute(
            sa.select(sessions.c.id).where(
                sessions.c.status == "PENDING", sessions.c.created_at < now - pending_timeout
            )
        ).scalars()
        for sid in list(expired):
            repo.set_kernels(
                conn,
                kernels.c.session_id == sid,
                ["PENDING"],
                "CANCELLED",
                reason="pending-timeout",
                now=now,
            )
            changes.append(repo.refresh_session(conn, sid, now))
    snapshots = _agent_snapshots(conn)
    selectors = {
        r.name: get_agent_selector(r.agent_selector)
        for r in conn.execute(sa.select(resource_groups.c.name, resource_groups.c.agent_selector))
    }
    pending = conn.execute(
        sa.select(sessions)
        .where(sessions.c.status == "PENDING")
        .order_by(sessions.c.priority.desc(), sessions.c.created_at)
    ).mappings()
    for sess in list(pending):
        group = sess["resource_group"]
        pool = [a for a in snapshots if a.resource_group == group]
        requests = [
            KernelRequest(
                k["id"],
                k["image"],
                sess["architecture"],
                ResourceSlots.from_json(k["requested_slots"]),
            )
            for k in repo.kernels_of(conn, sess["id"])
            if k["status"] == "PENDING"
        ]
        if not requests:
            continue
        placement = place_session(requests, pool, selectors[group])
        if not placement.ok:
            _note_pending_reason(conn, sess["id"], placement.reason, now)
            continue
        by_id = {a.id: a for a in snapshots}
        for req in requests:
            agent_id = placement.assignments[req.kernel_id]
            conn.execute(
                allocations.insert().values(
                    kernel_id=req.kernel_id,
                    agent_id=agent_id,
                    slots=req.slots.to_json(),
                    allocated_at=now,
                )
            )
            repo.set_kernels(
                conn,
                kernels.c.id == req.kernel_id,
                ["PENDING"],
                "SCHEDULED",
                now=now,
                agent_id=agent_id,
            )
            a = by_id[agent_id]
            by_id[agent_id] = AgentSnapshot(
                a.id, a.resource_group, a.architecture, a.capacity, a.occupied + req.slots, a.images
            )
        snapshots = list(by_id.values())
        changes.append(repo.refresh_session(conn, sess["id"], now))
    return [c for c in changes if c is not None]


async def serve_scheduler(
    ctx: ManagerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    cfg = ctx.config.manager
    task_status.started()
    while True:
        try:
            changes = await ctx.db.run(lambda c: schedule_once(c, time.time(), cfg.pending_timeout))
        except Exception:
            log.exception("scheduling pass failed; retrying in %.1f s", cfg.reconcile_interval)
            changes = []
        await publish_changes(ctx, changes)
        if any(c.new == "SCHEDULED" for c in changes):
            ctx.launch.set()
        await ctx.schedule.wait(cfg.reconcile_interval)
