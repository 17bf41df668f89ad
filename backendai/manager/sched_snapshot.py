"""Reading what a scheduling pass needs from the database, as pure snapshots.

One read, no locks: the plan made from it is checked again, under row locks,
when it is written (``sched_commit``).  Occupancy is the sum of live
allocation rows; a fair-share group's usage history is derived from allocation
rows with their times; the round-robin cursor is the agent of the newest
allocation in the group.  Nothing is kept between passes.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..db.tables import (
    agents,
    allocations,
    kernels,
    resource_groups,
    session_dependencies,
    session_history,
    sessions,
)
from ..errors import BackendAIError
from ..sched import (
    KNOWN_SLOTS,
    AgentSnapshot,
    Decision,
    Dependency,
    GroupOptions,
    GroupSnapshot,
    KernelRequest,
    PendingSession,
    ResourceSlots,
    RunningSession,
    UsageInterval,
    decayed_shares,
    get_sequencer,
)
from . import catalog
from .admission import policy_limits
from .policy_limits import group_limits, held_by_group

__all__ = ["PassSnapshot", "SlotsCache", "load_snapshot", "raw_json"]

log = logging.getLogger(__name__)
# A fair-share group counts allocations released within this many half-lives (2**-8 weight).
HISTORY_HALF_LIVES = 8


@dataclass
class PassSnapshot:
    now: float
    groups: list[GroupSnapshot] = field(default_factory=list)
    # Sessions of groups that cannot schedule (inactive, bad options): they wait, and say why.
    stalled: list[Decision] = field(default_factory=list)
    # pending session id -> (history row id, reason, detail) of its newest session-level record
    last_record: dict[str, tuple[int, str | None, str | None]] = field(default_factory=dict)
    # session id -> cluster size (a session whose pending kernels are fewer is partial)
    cluster_size: dict[str, int] = field(default_factory=dict)

    @property
    def pending_count(self) -> int:
        return sum(len(g.pending) for g in self.groups) + len(self.stalled)


def raw_json(column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """A JSON column as its text: the same few slot amounts parse once (see :class:`SlotsCache`)."""
    return sa.cast(column, sa.Text).label(column.key)


class SlotsCache(dict[str, ResourceSlots]):
    """Parsed slot amounts by their JSON text, for one snapshot."""

    def __missing__(self, raw: str) -> ResourceSlots:
        slots = self[raw] = ResourceSlots.from_json(json.loads(raw))
        return slots


def _pending(conn: sa.Connection, parsed: SlotsCache) -> list[PendingSession]:
    srows = list(
        conn.execute(
            sa.select(
                sessions.c.id,
                sessions.c.name,
                sessions.c.access_key,
                sessions.c.resource_group,
                sessions.c.priority,
                sessions.c.created_at,
                sessions.c.cluster_mode,
                sessions.c.preemptible,
                sessions.c.starts_at,
                sessions.c.architecture,
            ).where(sessions.c.status == "PENDING")
        )
    )
    if not srows:
        return []
    # Images a registry holds: an agent without one may still take it, and pull it.
    pullable = catalog.pullable_images(conn)
    arch = {r.id: r.architecture for r in srows}
    reqs: dict[str, list[KernelRequest]] = defaultdict(list)
    krows = conn.execute(
        sa.select(
            kernels.c.id, kernels.c.session_id, kernels.c.image, raw_json(kernels.c.requested_slots)
        )
        .join(sessions, sessions.c.id == kernels.c.session_id)
        .where(sessions.c.status == "PENDING", kernels.c.status == "PENDING")
        .order_by(kernels.c.session_id, kernels.c.cluster_idx)
    )
    for k in krows:
        a = arch.get(k.session_id)
        if a is None:
            continue  # enqueued after the first query (a snapshot without repeatable read)
        reqs[k.session_id].append(
            KernelRequest(
                k.id,
                k.image,
                a,
                parsed[k.requested_slots],
                (k.image, a) in pullable,
            )
        )
    deps: dict[str, list[Dependency]] = defaultdict(list)
    dep = sessions.alias("dep")
    waiting = sessions.alias("waiting")
    drows = conn.execute(
        sa.select(
            session_dependencies.c.session_id,
            dep.c.id,
            dep.c.name,
            dep.c.status,
            dep.c.exit_code,
            dep.c.terminated_at,
        )
        .join(dep, dep.c.id == session_dependencies.c.depends_on)
        .join(waiting, waiting.c.id == session_dependencies.c.session_id)
        .where(waiting.c.status == "PENDING")
    )
    for d in drows:
        deps[d.session_id].append(Dependency(d.id, d.name, d.status, d.exit_code, d.terminated_at))
    return [
        PendingSession(
            id=r.id,
            name=r.name,
            access_key=r.access_key,
            resource_group=r.resource_group,
            priority=r.priority,
            created_at=r.created_at,
            kernels=tuple(reqs[r.id]),
            cluster_mode=r.cluster_mode,
            preemptible=bool(r.preemptible),
            starts_at=r.starts_at,
            dependencies=tuple(deps.get(r.id, ())),
        )
        for r in srows
        if reqs.get(r.id)
    ]


def _live(
    conn: sa.Connection, parsed: SlotsCache
) -> tuple[dict[str, ResourceSlots], dict[str, list[RunningSession]]]:
    """Occupancy per agent, and the sessions holding allocations per resource group."""
    rows = conn.execute(
        sa.select(
            allocations.c.agent_id,
            raw_json(allocations.c.slots),
            allocations.c.allocated_at,
            sessions.c.id,
            sessions.c.access_key,
            sessions.c.resource_group,
            sessions.c.priority,
            sessions.c.preemptible,
            sessions.c.status,
        )
        .join(kernels, kernels.c.id == allocations.c.kernel_id)
        .join(sessions, sessions.c.id == kernels.c.session_id)
        .where(allocations.c.released_at.is_(None))
    )
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    held: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        slots = parsed[r.slots]
        agent_sums = sums[r.agent_id]
        for slot, amount in slots.items():
            agent_sums[slot] += amount
        held[r.id].append((r, slots))
    occupied = {agent_id: ResourceSlots(s) for agent_id, s in sums.items()}
    running: dict[str, list[RunningSession]] = defaultdict(list)
    for sid, parts in held.items():
        first = parts[0][0]
        running[first.resource_group].append(
            RunningSession(
                sid,
                first.access_key,
                first.resource_group,
                first.priority,
                bool(first.preemptible),
                first.status,
                min(p.allocated_at for p, _ in parts),
                tuple((p.agent_id, s) for p, s in parts),
            )
        )
    return occupied, running


def _last_records(conn: sa.Connection) -> dict[str, tuple[int, str | None, str | None]]:
    newest = (
        sa.select(sa.func.max(session_history.c.id))
        .join(sessions, sessions.c.id == session_history.c.session_id)
        .where(sessions.c.status == "PENDING", session_history.c.kernel_id.is_(None))
        .group_by(session_history.c.session_id)
    )
    rows = conn.execute(
        sa.select(
            session_history.c.id,
            session_history.c.session_id,
            session_history.c.reason,
            session_history.c.detail,
        ).where(session_history.c.id.in_(newest))
    )
    return {r.session_id: (r.id, r.reason, r.detail) for r in rows}


def _last_agent(conn: sa.Connection, group: str) -> str | None:
    row = conn.execute(
        sa.select(allocations.c.agent_id)
        .join(agents, agents.c.id == allocations.c.agent_id)
        .where(agents.c.resource_group == group)
        .order_by(allocations.c.allocated_at.desc(), allocations.c.kernel_id.desc())
        .limit(1)
    ).first()
    return None if row is None else str(row[0])


def _history(
    conn: sa.Connection, group: str, capacity: Mapping[str, Any], now: float, half_life: float
) -> dict[str, float]:
    since = now - HISTORY_HALF_LIVES * half_life
    rows = conn.execute(
        sa.select(
            sessions.c.access_key,
            allocations.c.slots,
            allocations.c.allocated_at,
            allocations.c.released_at,
        )
        .join(kernels, kernels.c.id == allocations.c.kernel_id)
        .join(sessions, sessions.c.id == kernels.c.session_id)
        .where(
            sessions.c.resource_group == group,
            sa.or_(allocations.c.released_at.is_(None), allocations.c.released_at > since),
        )
    )
    intervals = [
        UsageInterval(r.access_key, ResourceSlots.from_json(r.slots), r.allocated_at, r.released_at)
        for r in rows
    ]
    return decayed_shares(intervals, capacity, now, half_life)


def load_snapshot(conn: sa.Connection, now: float) -> PassSnapshot:
    """Everything a pass needs, read in one transaction (on PostgreSQL a repeatable-read,
    read-only one, so every query sees the same moment)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    snap = PassSnapshot(now)
    parsed = SlotsCache()
    pending = _pending(conn, parsed)
    if not pending:
        return snap
    by_group: dict[str, list[PendingSession]] = defaultdict(list)
    for s in pending:
        by_group[s.resource_group].append(s)
    snap.cluster_size = dict(
        conn.execute(
            sa.select(sessions.c.id, sessions.c.cluster_size).where(sessions.c.status == "PENDING")
        ).all()
    )
    snap.last_record = _last_records(conn)
    occupied, running = _live(conn, parsed)
    policies = policy_limits(conn, {s.access_key for s in pending})
    held = held_by_group(running, pending)
    group_rows = conn.execute(
        sa.select(resource_groups).where(resource_groups.c.name.in_(list(by_group)))
    ).mappings()
    agent_rows = conn.execute(
        sa.select(agents).where(
            agents.c.status == "ALIVE", agents.c.resource_group.in_(list(by_group))
        )
    ).mappings()
    alive: dict[str, list[AgentSnapshot]] = defaultdict(list)
    for r in agent_rows:
        alive[r["resource_group"]].append(
            AgentSnapshot(
                id=r["id"],
                resource_group=r["resource_group"],
                architecture=r["architecture"],
                capacity=ResourceSlots.from_json(r["capacity"]),
                occupied=occupied.get(r["id"], ResourceSlots()),
                images=frozenset(r["images"]),
            )
        )
    seen: set[str] = set()
    for g in group_rows:
        name = g["name"]
        seen.add(name)
        if not g["is_active"]:
            _stall(snap, by_group[name], f"resource group {name!r} is inactive")
            continue
        try:
            advertised = {s for a in alive.get(name, []) for s in a.capacity}
            options = GroupOptions.parse(
                g["options"], group=name, known_slots=set(KNOWN_SLOTS) | advertised
            )
            needs_history = get_sequencer(g["scheduler"]).needs_history
        except BackendAIError as e:
            log.error("resource group %s cannot schedule: %s", name, e)
            _stall(snap, by_group[name], f"resource group {name!r} cannot schedule: {e}")
            continue
        group_agents = alive.get(name, [])
        history: dict[str, float] = {}
        if needs_history:
            capacity = ResourceSlots()
            for a in group_agents:
                capacity = capacity + a.capacity
            history = _history(conn, name, capacity, now, options.fair_share_half_life)
        snap.groups.append(
            GroupSnapshot(
                name=name,
                agents=group_agents,
                pending=by_group[name],
                running=running.get(name, []),
                options=options,
                sequencer=g["scheduler"],
                agent_selector=g["agent_selector"],
                history=history,
                last_agent=_last_agent(conn, name) if g["agent_selector"] == "roundrobin" else None,
                limits=group_limits(name, options.keypair_limits, policies, held),
            )
        )
    for name in set(by_group) - seen:
        _stall(snap, by_group[name], f"resource group {name!r} does not exist")
    return snap


def _stall(snap: PassSnapshot, pending: list[PendingSession], why: str) -> None:
    snap.stalled.extend(Decision(s, "wait", "resource-group", why) for s in pending)
