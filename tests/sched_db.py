"""Rows for scheduler tests on a real database: groups, agents as rows, sessions, allocations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from backendai.db.tables import (
    agents,
    allocations,
    kernels,
    keypairs,
    resource_groups,
    session_dependencies,
    session_history,
    sessions,
)
from backendai.sched import ResourceSlots

PY = "backendai/python:3.11"


def add_group(
    conn: sa.Connection,
    name: str = "g",
    *,
    sequencer: str = "fifo",
    selector: str = "first-fit",
    options: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        resource_groups.insert().values(
            name=name,
            description="",
            is_active=True,
            scheduler=sequencer,
            agent_selector=selector,
            options=dict(options or {}),
            created_at=0.0,
        )
    )


def add_keypairs(conn: sa.Connection, *access_keys: str) -> None:
    conn.execute(
        keypairs.insert(),
        [
            {
                "access_key": k,
                "secret_key": "s",
                "user_id": f"{k}@example.com",
                "role": "user",
                "is_active": True,
                "created_at": 0.0,
            }
            for k in access_keys
        ],
    )


def add_agents(conn: sa.Connection, ids: Iterable[str], group: str = "g", **capacity: Any) -> None:
    cap = ResourceSlots.parse(capacity or {"cpu": 4, "mem": "8g"}).to_json()
    conn.execute(
        agents.insert(),
        [
            {
                "id": i,
                "status": "ALIVE",
                "status_changed": 0.0,
                "rpc_addr": f"http://{i}.invalid:6001",
                "resource_group": group,
                "architecture": "x86_64",
                "backend": "dummy",
                "capacity": cap,
                "images": [PY],
                "hardware": {},
                "version": "test",
                "first_contact": 0.0,
                "last_heartbeat": 1e12,
            }
            for i in ids
        ],
    )


def add_session(
    conn: sa.Connection,
    sid: str,
    *,
    user: str = "u1",
    group: str = "g",
    created: float = 1.0,
    cpu: int | str = 1,
    mem: str = "1g",
    size: int = 1,
    mode: str = "single-node",
    priority: int = 0,
    preemptible: bool = False,
    starts_at: float | None = None,
    session_type: str = "interactive",
    depends_on: Iterable[str] = (),
    status: str = "PENDING",
    agent: str | None = None,
    exit_code: int | None = None,
) -> list[str]:
    """A session and its kernels in *status*; with *agent*, live allocations there."""
    slots = ResourceSlots.parse({"cpu": cpu, "mem": mem}).to_json()
    terminal = status in ("TERMINATED", "CANCELLED", "ERROR")
    conn.execute(
        sessions.insert().values(
            id=sid,
            name=f"name-{sid}",
            access_key=user,
            session_type=session_type,
            status=status,
            status_changed=created,
            image=PY,
            architecture="x86_64",
            resource_group=group,
            cluster_mode=mode,
            cluster_size=size,
            requested_slots=slots,
            environ={},
            priority=priority,
            preemptible=preemptible,
            starts_at=starts_at,
            created_at=created,
            terminated_at=created if terminal else None,
            exit_code=exit_code,
        )
    )
    kids = [f"{sid}-k{i}" for i in range(size)]
    conn.execute(
        kernels.insert(),
        [
            {
                "id": kid,
                "session_id": sid,
                "cluster_role": "main" if i == 0 else "sub",
                "cluster_idx": i,
                "agent_id": agent,
                "status": status,
                "status_changed": created,
                "image": PY,
                "requested_slots": slots,
                "attempts": 0,
                "created_at": created,
            }
            for i, kid in enumerate(kids)
        ],
    )
    conn.execute(
        session_history.insert().values(
            session_id=sid, status="PENDING", detail="enqueued", at=created
        )
    )
    if agent is not None:
        conn.execute(
            allocations.insert(),
            [
                {
                    "kernel_id": kid,
                    "agent_id": agent,
                    "slots": slots,
                    "allocated_at": created,
                    "released_at": created + 1 if terminal else None,
                }
                for kid in kids
            ],
        )
    for dep in depends_on:
        conn.execute(session_dependencies.insert().values(session_id=sid, depends_on=dep))
    return kids


def statuses(conn: sa.Connection) -> dict[str, str]:
    return dict(conn.execute(sa.select(sessions.c.id, sessions.c.status)).all())


def live_allocations(conn: sa.Connection) -> dict[str, str]:
    """kernel id -> agent id of every live allocation."""
    rows = conn.execute(
        sa.select(allocations.c.kernel_id, allocations.c.agent_id).where(
            allocations.c.released_at.is_(None)
        )
    )
    return dict(rows.all())


def trace(conn: sa.Connection, sid: str) -> list[tuple[str, str | None, str | None]]:
    """The session-level history of *sid*: (status, reason, detail)."""
    rows = conn.execute(
        sa.select(session_history.c.status, session_history.c.reason, session_history.c.detail)
        .where(session_history.c.session_id == sid, session_history.c.kernel_id.is_(None))
        .order_by(session_history.c.id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]
