"""Writing a scheduling plan: each function is one unit of work in one transaction.

Starting sessions is where safety lives.  The plan was made from a snapshot
read without locks, so :func:`commit_starts` locks the agents it is about to
use (``FOR UPDATE``, in id order, on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
already serialises writers), derives their occupancy from live allocation
rows, locks the sessions' PENDING kernels, and writes only the placements that
still fit on agents still ALIVE, all or nothing per session.  Two managers
planning from the same snapshot therefore never double-allocate: the second
finds the kernels taken or the room gone, and those sessions wait for the next
pass.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..db.tables import agents, allocations, kernels, session_history, sessions
from ..sched import Decision, Preemption, ResourceSlots
from . import repo
from .launcher import fail_session
from .repo import StatusChange
from .sched_snapshot import SlotsCache, raw_json
from .states import TERMINAL

__all__ = [
    "commit_cancels",
    "commit_preemptions",
    "commit_starts",
    "commit_waits",
    "preempted_to_requeue",
    "requeue_preempted",
]

# status_info of a preempted session, by the group's preemption mode.
PREEMPTED = {"terminate": "preempted", "requeue": "preempted-requeue"}
_REQUEUED = "preempted-requeued"


def _free_now(conn: sa.Connection, agent_ids: Sequence[str]) -> dict[str, ResourceSlots]:
    """Lock the agents; their free capacity from live allocation rows.  ALIVE ones only."""
    locked = conn.execute(
        sa.select(agents.c.id, agents.c.status, agents.c.capacity)
        .where(agents.c.id.in_(agent_ids))
        .order_by(agents.c.id)
        .with_for_update()
    ).all()
    free = {r.id: ResourceSlots.from_json(r.capacity) for r in locked if r.status == "ALIVE"}
    live = conn.execute(
        sa.select(allocations.c.agent_id, raw_json(allocations.c.slots)).where(
            allocations.c.agent_id.in_(list(free)), allocations.c.released_at.is_(None)
        )
    )
    parsed = SlotsCache()
    held: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for agent_id, slots in live:
        sums = held[agent_id]
        for slot, amount in parsed[slots].items():
            sums[slot] += amount
    return {a: f - held[a] for a, f in free.items()}


def commit_starts(
    conn: sa.Connection,
    starts: Sequence[Decision],
    now: float,
    cluster_size: Mapping[str, int],
    how: str,
) -> tuple[list[StatusChange], list[Decision]]:
    """Write the placements that still hold; returns the changes and the refused decisions."""
    if not starts:
        return [], []
    free = _free_now(conn, sorted({a for d in starts for a in d.assignments.values()}))
    still_pending = set(
        conn.execute(
            sa.select(kernels.c.id)
            .where(
                kernels.c.session_id.in_([d.session.id for d in starts]),
                kernels.c.status == "PENDING",
            )
            .order_by(kernels.c.id)
            .with_for_update()
        ).scalars()
    )
    accepted: list[Decision] = []
    refused: list[Decision] = []
    for d in starts:
        need: dict[str, ResourceSlots] = defaultdict(ResourceSlots)
        for k in d.session.kernels:
            need[d.assignments[k.kernel_id]] = need[d.assignments[k.kernel_id]] + k.slots
        if all(k.kernel_id in still_pending for k in d.session.kernels) and all(
            a in free and n.fits_in(free[a]) for a, n in need.items()
        ):
            for a, n in need.items():
                free[a] = free[a] - n
            accepted.append(d)
        else:
            refused.append(d)
    if not accepted:
        return [], refused
    _write_starts(conn, accepted, now, how)
    changes: list[StatusChange] = []
    whole = [d for d in accepted if len(d.session.kernels) == cluster_size.get(d.session.id)]
    if whole:
        conn.execute(
            sessions.update()
            .where(sessions.c.id.in_([d.session.id for d in whole]), sessions.c.status == "PENDING")
            .values(status="SCHEDULED", status_changed=now, status_info=None)
        )
        conn.execute(
            session_history.insert(),
            [_history(d.session.id, None, "SCHEDULED", None, _where(d, how), now) for d in whole],
        )
        changes += [
            StatusChange(
                d.session.id, d.session.name, d.session.access_key, "PENDING", "SCHEDULED", None
            )
            for d in whole
        ]
    whole_ids = {d.session.id for d in whole}
    for d in accepted:
        if d.session.id not in whole_ids:  # not all its kernels were pending: derive its status
            ch = repo.refresh_session(conn, d.session.id, now)
            if ch is not None:
                changes.append(ch)
    return changes, refused


def _where(d: Decision, how: str) -> str:
    placed = sorted(set(d.assignments.values()))
    return f"placed on {', '.join(placed)} ({how})"


def _history(
    session_id: str,
    kernel_id: str | None,
    status: str,
    reason: str | None,
    detail: str | None,
    at: float,
) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "kernel_id": kernel_id,
        "status": status,
        "reason": reason,
        "detail": detail,
        "at": at,
    }


def _write_starts(conn: sa.Connection, accepted: Sequence[Decision], now: float, how: str) -> None:
    kernel_rows = [(d, k) for d in accepted for k in d.session.kernels]
    conn.execute(
        allocations.insert(),
        [
            {
                "kernel_id": k.kernel_id,
                "agent_id": d.assignments[k.kernel_id],
                "slots": k.slots.to_json(),
                "allocated_at": now,
            }
            for d, k in kernel_rows
        ],
    )
    conn.execute(
        kernels.update()
        .where(kernels.c.id == sa.bindparam("b_id"), kernels.c.status == "PENDING")
        .values(
            status="SCHEDULED",
            status_changed=now,
            status_info=None,
            agent_id=sa.bindparam("b_agent"),
        ),
        [{"b_id": k.kernel_id, "b_agent": d.assignments[k.kernel_id]} for d, k in kernel_rows],
    )
    conn.execute(
        session_history.insert(),
        [
            _history(
                d.session.id,
                k.kernel_id,
                "SCHEDULED",
                None,
                f"agent {d.assignments[k.kernel_id]}",
                now,
            )
            for d, k in kernel_rows
        ],
    )


def commit_waits(
    conn: sa.Connection,
    waits: Sequence[Decision],
    last: Mapping[str, tuple[int, str | None, str | None]],
    now: float,
) -> None:
    """The decision trace: a new PENDING record when the check that holds a session back
    changes; the same check with news (what is free now) updates its record in place."""
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for d in waits:
        row_id, reason, detail = last.get(d.session.id, (0, None, None))
        if reason == d.check and detail == d.detail:
            continue
        if reason == d.check and row_id:
            updates.append({"b_id": row_id, "b_detail": d.detail})
        else:
            inserts.append(_history(d.session.id, None, "PENDING", d.check, d.detail, now))
    if inserts:
        conn.execute(session_history.insert(), inserts)
    if updates:
        conn.execute(
            session_history.update()
            .where(session_history.c.id == sa.bindparam("b_id"))
            .values(detail=sa.bindparam("b_detail"), at=now),
            updates,
        )


def commit_cancels(
    conn: sa.Connection, cancels: Sequence[Decision], now: float
) -> list[StatusChange | None]:
    """Sessions that can never start (pending timeout, a dependency that failed)."""
    changes: list[StatusChange | None] = []
    for d in cancels:
        reason = "dependency-failed" if d.check == "dependencies" else d.check
        moved = repo.set_kernels(
            conn,
            kernels.c.session_id == d.session.id,
            ["PENDING"],
            "CANCELLED",
            reason=reason,
            now=now,
        )
        if moved:
            repo.record(conn, d.session.id, None, "PENDING", d.check, d.detail, now)
            changes.append(repo.refresh_session(conn, d.session.id, now))
    return changes


def commit_preemptions(
    conn: sa.Connection, preemptions: Sequence[Preemption], now: float
) -> list[StatusChange | None]:
    changes: list[StatusChange | None] = []
    for p in preemptions:
        status = conn.execute(
            sa.select(sessions.c.status).where(sessions.c.id == p.victim.id)
        ).scalar()
        if status is None or status in TERMINAL or status == "TERMINATING":
            continue
        repo.record(
            conn,
            p.victim.id,
            None,
            status,
            PREEMPTED[p.mode],
            f"preempted by session {p.by.name} ({p.by.id}, priority {p.by.priority}) in "
            f"resource group {p.by.resource_group!r}"
            + ("; it will be queued again" if p.mode == "requeue" else ""),
            now,
        )
        changes.append(fail_session(conn, p.victim.id, PREEMPTED[p.mode], now))
    return changes


def preempted_to_requeue(conn: sa.Connection) -> list[str]:
    """Sessions preempted with ``requeue`` that have ended and are not queued again yet."""
    return list(
        conn.execute(
            sa.select(sessions.c.id).where(
                sessions.c.status_info == PREEMPTED["requeue"], sessions.c.status.in_(TERMINAL)
            )
        ).scalars()
    )


def requeue_preempted(conn: sa.Connection, ids: Sequence[str], now: float) -> list[StatusChange]:
    """Queue *ids* again, as new sessions with the same request (their name is free now)."""
    done = list(
        conn.execute(
            sa.select(sessions).where(
                sessions.c.id.in_(list(ids)),
                sessions.c.status_info == PREEMPTED["requeue"],
                sessions.c.status.in_(TERMINAL),
            )
        ).mappings()
    )
    changes: list[StatusChange] = []
    for old in done:
        conn.execute(
            sessions.update().where(sessions.c.id == old["id"]).values(status_info=_REQUEUED)
        )
        taken = conn.execute(
            sa.select(sessions.c.id).where(
                sessions.c.access_key == old["access_key"],
                sessions.c.name == old["name"],
                sessions.c.terminated_at.is_(None),
            )
        ).first()
        if taken is not None:
            repo.record(
                conn, old["id"], None, old["status"], _REQUEUED,
                f"not queued again: the name {old['name']!r} is in use by session {taken[0]}", now,
            )  # fmt: skip
            continue
        sid = str(uuid.uuid4())
        row = {
            c: old[c]
            for c in (
                "name", "access_key", "session_type", "image", "architecture", "resource_group",
                "cluster_mode", "cluster_size", "requested_slots", "environ", "mounts", "tag",
                "startup_command", "priority", "preemptible", "domain_name", "group_id",
            )
        }  # fmt: skip
        row |= {"id": sid, "status": "PENDING", "status_changed": now, "created_at": now}
        slots = ResourceSlots.from_json(old["requested_slots"]).to_json()
        repo.insert_session(
            conn,
            row,
            [
                {
                    "id": str(uuid.uuid4()),
                    "session_id": sid,
                    "cluster_role": "main" if i == 0 else "sub",
                    "cluster_idx": i,
                    "status": "PENDING",
                    "status_changed": now,
                    "image": old["image"],
                    "requested_slots": slots,
                    "attempts": 0,
                    "created_at": now,
                }
                for i in range(old["cluster_size"])
            ],
        )
        repo.record(
            conn,
            sid,
            None,
            "PENDING",
            "requeued",
            f"requeued after session {old['id']} was preempted",
            now,
        )
        repo.record(
            conn, old["id"], None, old["status"], _REQUEUED, f"queued again as session {sid}", now
        )
        changes.append(StatusChange(sid, old["name"], old["access_key"], "", "PENDING", "requeued"))
    return changes
