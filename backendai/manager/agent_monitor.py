"""Agents as the manager sees them: heartbeats in, LOST out, kernels reconciled.

Each heartbeat (an anycast event: one manager handles it) upserts the agent
row, its images, and compares the kernels the agent reports with the
database: a container that exited on its own sends its kernel to TERMINATING;
a container the database considers gone is an orphan and the agent is told to
remove it.  An agent silent for ``heartbeat_timeout`` is LOST; its kernels
keep running (marked ``agent-lost``) for ``agent_lost_grace`` in case it comes
back and re-adopts them, after which they are given up.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import sqlalchemy as sa
import trio

from ..bus import Event
from ..db.tables import agents, kernels, resource_groups, sessions
from ..sched import ResourceSlots
from . import catalog, repo
from .context import ManagerContext, publish_changes
from .pulls import publish_pull_progress
from .repo import StatusChange
from .states import LAUNCHING, ORDER, TERMINAL
from .terminator import finish_kernel

__all__ = ["apply_heartbeat", "handle_agent_event", "mark_lost_agents", "serve_agent_monitor"]

log = logging.getLogger(__name__)
# A kernel must have been RUNNING this long before a heartbeat that lacks it counts as gone.
_GONE_MARGIN = 2.0


def _upsert(
    conn: sa.Connection, table: sa.Table, keys: dict[str, Any], values: dict[str, Any]
) -> bool:
    """Update the row with *keys*, or insert it; True when inserted."""
    cond = sa.and_(*(table.c[k] == v for k, v in keys.items()))
    if conn.execute(table.update().where(cond).values(**values)).rowcount:
        return False
    conn.execute(table.insert().values(**keys, **values))
    return True


def apply_heartbeat(
    conn: sa.Connection, hb: dict[str, Any], now: float
) -> tuple[list[StatusChange | None], list[tuple[str, str]]]:
    """Returns the session changes and the orphans ``(rpc_addr, kernel_id)`` to remove."""
    agent_id = hb["agent_id"]
    group = hb["resource_group"]
    known_group = conn.execute(
        sa.select(resource_groups.c.name).where(resource_groups.c.name == group)
    ).first()
    if known_group is None:
        conn.execute(
            resource_groups.insert().values(name=group, description="", created_at=now, options={})
        )
        log.info("resource group %s created for agent %s", group, agent_id)
    prev = conn.execute(sa.select(agents.c.status).where(agents.c.id == agent_id)).scalar()
    row = {
        "status": "ALIVE",
        "rpc_addr": hb["rpc_addr"],
        "resource_group": group,
        "architecture": hb["architecture"],
        "backend": hb["backend"],
        "capacity": ResourceSlots.from_json(hb["capacity"]).to_json(),
        "images": sorted(i["name"] for i in hb["images"]),
        "hardware": hb.get("hardware", {}),
        "version": hb["version"],
        "last_heartbeat": now,
    }
    if prev != "ALIVE":
        row["status_changed"] = now
    if _upsert(
        conn,
        agents,
        {"id": agent_id},
        row if prev is not None else {**row, "first_contact": now, "status_changed": now},
    ):
        log.info("agent %s joined resource group %s at %s", agent_id, group, hb["rpc_addr"])
    elif prev != "ALIVE":
        log.info("agent %s is back (was %s)", agent_id, prev)
        conn.execute(
            kernels.update()
            .where(
                kernels.c.agent_id == agent_id,
                kernels.c.status_info == "agent-lost",
                kernels.c.status == "RUNNING",
            )
            .values(status_info=None)
        )
        back = sa.select(kernels.c.session_id).where(
            kernels.c.agent_id == agent_id, kernels.c.status == "RUNNING"
        )
        for sid in list(conn.execute(back).scalars()):
            cleared = conn.execute(
                sessions.update()
                .where(sessions.c.id == sid, sessions.c.status_info == "agent-lost")
                .values(status_info=None)
            ).rowcount
            if cleared:
                repo.record(conn, sid, None, "RUNNING", None, f"agent {agent_id} is back", now)
    catalog.note_agent_images(conn, hb["images"], now)
    return _reconcile_kernels(conn, agent_id, hb, now)


def _reconcile_kernels(
    conn: sa.Connection, agent_id: str, hb: dict[str, Any], now: float
) -> tuple[list[StatusChange | None], list[tuple[str, str]]]:
    reported = {k["kernel_id"]: k for k in hb["kernels"]}
    ours = {
        r["id"]: r
        for r in conn.execute(
            sa.select(kernels).where(
                kernels.c.agent_id == agent_id, kernels.c.status.not_in(TERMINAL)
            )
        ).mappings()
    }
    changes: list[StatusChange | None] = []
    for kid, k in ours.items():
        if k["status"] != "RUNNING":
            continue
        seen = reported.get(kid)
        if seen is not None and seen["state"] == "exited":
            reason, code = "self-terminated", seen.get("exit_code")
        elif seen is None and (k["started_at"] or now) < hb["at"] - _GONE_MARGIN:
            reason, code = "kernel-gone", None
        else:
            continue
        log.info(
            "kernel %s on agent %s ended on its own (%s, exit code %s)", kid, agent_id, reason, code
        )
        repo.set_kernels(
            conn,
            kernels.c.id == kid,
            ["RUNNING"],
            "TERMINATING",
            reason=reason,
            now=now,
            exit_code=code,
        )
        changes.append(repo.refresh_session(conn, k["session_id"], now))
    # An orphan: a container whose kernel the database does not know, or ended a while ago
    # (one that ended just now may still be on its way out through the terminator).
    ended = dict(
        conn.execute(
            sa.select(kernels.c.id, kernels.c.terminated_at).where(
                kernels.c.id.in_([k for k in reported if k not in ours])
            )
        ).all()
    )
    orphans = [
        (hb["rpc_addr"], kid)
        for kid in reported
        if kid not in ours and (ended.get(kid) or 0) < hb["at"] - _GONE_MARGIN
    ]
    return changes, orphans


def mark_lost_agents(
    conn: sa.Connection, now: float, timeout: float, grace: float
) -> list[StatusChange | None]:
    changes: list[StatusChange | None] = []
    lost = list(
        conn.execute(
            sa.select(agents.c.id, agents.c.last_heartbeat).where(
                agents.c.status == "ALIVE", agents.c.last_heartbeat < now - timeout
            )
        )
    )
    for agent_id, last in lost:
        log.warning("agent %s is LOST: no heartbeat for %.1f s", agent_id, now - last)
        conn.execute(
            agents.update().where(agents.c.id == agent_id).values(status="LOST", status_changed=now)
        )
        conn.execute(
            kernels.update()
            .where(
                kernels.c.agent_id == agent_id,
                kernels.c.status == "RUNNING",
                kernels.c.status_info.is_(None),
            )
            .values(status_info="agent-lost")
        )
        for sid in {
            r.session_id
            for r in conn.execute(
                sa.select(kernels.c.session_id).where(
                    kernels.c.agent_id == agent_id, kernels.c.status == "RUNNING"
                )
            )
        }:
            conn.execute(
                sessions.update().where(sessions.c.id == sid).values(status_info="agent-lost")
            )
            repo.record(conn, sid, None, "RUNNING", "agent-lost", f"agent {agent_id} lost", now)
    given_up = conn.execute(
        sa.select(kernels.c.id, kernels.c.session_id, kernels.c.status)
        .join(agents, agents.c.id == kernels.c.agent_id)
        .where(
            agents.c.status == "LOST",
            agents.c.status_changed < now - grace,
            kernels.c.status.in_([*LAUNCHING, "RUNNING", "TERMINATING"]),
        )
    )
    for kid, sid, status in list(given_up):
        log.warning("giving up kernel %s: its agent has been lost for over %.0f s", kid, grace)
        repo.set_kernels(
            conn, kernels.c.id == kid, [status], "TERMINATING", reason="agent-lost", now=now
        )
        changes.append(finish_kernel(conn, kid, sid, "agent-lost", None, now))
    return changes


def _advance(conn: sa.Connection, kernel_id: str, status: str, now: float) -> StatusChange | None:
    """Apply an agent's progress report (PULLING, CREATING...) if it moves forward."""
    if status not in LAUNCHING:
        return None
    earlier = [s for s in LAUNCHING if ORDER.index(s) < ORDER.index(status)]
    moved = repo.set_kernels(conn, kernels.c.id == kernel_id, earlier, status, now=now)
    return repo.refresh_session(conn, moved[0][1], now) if moved else None


async def handle_agent_event(ctx: ManagerContext, event: Event) -> None:
    """The anycast consumer for events agents send to the manager."""
    now = time.time()
    if event.name == "agent_heartbeat":
        changes, orphans = await ctx.db.run(lambda c: apply_heartbeat(c, dict(event.data), now))
        await publish_changes(ctx, changes)
        if any(c is not None for c in changes):
            ctx.terminate.set()
        ctx.schedule.set()
        for addr, kid in orphans:
            log.warning(
                "agent %s holds kernel %s, which is not live here: removing it", event.source, kid
            )
            try:
                await ctx.agents.destroy_kernel(addr, kid)
            except Exception as e:
                log.warning(
                    "removing orphan kernel %s failed: %s; will retry at next heartbeat", kid, e
                )
    elif event.name == "kernel_status":
        change = await ctx.db.run(
            lambda c: _advance(c, event.data["kernel_id"], event.data["status"], now)
        )
        await publish_changes(ctx, [change])
        await publish_pull_progress(ctx, event)
    else:
        log.debug("ignoring agent event %s from %s", event.name, event.source)


async def serve_agent_monitor(
    ctx: ManagerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    cfg = ctx.config.manager
    async with trio.open_nursery() as nursery:
        await nursery.start(
            ctx.bus.serve_anycast, "manager", ctx.manager_id, lambda e: handle_agent_event(ctx, e)
        )
        task_status.started()
        while True:
            await trio.sleep(min(cfg.heartbeat_timeout / 2, cfg.reconcile_interval))
            try:
                changes = await ctx.db.run(
                    lambda c: mark_lost_agents(
                        c, time.time(), cfg.heartbeat_timeout, cfg.agent_lost_grace
                    )
                )
            except Exception:
                log.exception("checking for lost agents failed; retrying")
                continue
            await publish_changes(ctx, changes)
