"""Units of work on the manager database: sync functions over one Connection.

Each function runs inside the transaction that ``Database.run`` opened, so a
caller composes several into one atomic step.  State changes are conditional
updates (``WHERE status IN (...)``): two managers racing on the same kernel
cannot both win, and a late writer never moves a kernel backwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..db.tables import allocations, kernels, keypairs, session_history, sessions, users
from .states import TERMINAL, derive_session_status

__all__ = [
    "StatusChange",
    "find_session",
    "history",
    "insert_session",
    "is_uuid",
    "kernels_of",
    "list_sessions",
    "record",
    "refresh_session",
    "release_allocation",
    "set_kernels",
]


@dataclass(frozen=True)
class StatusChange:
    """A session whose derived status moved; the caller publishes the event."""

    session_id: str
    session_name: str
    access_key: str
    old: str
    new: str
    reason: str | None
    exit_code: int | None = None


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def insert_session(
    conn: sa.Connection, session: Mapping[str, Any], kernel_rows: Sequence[Mapping[str, Any]]
) -> None:
    conn.execute(sessions.insert().values(**session))
    conn.execute(kernels.insert(), [dict(k) for k in kernel_rows])
    record(conn, session["id"], None, session["status"], None, "enqueued", session["created_at"])


def record(
    conn: sa.Connection,
    session_id: str,
    kernel_id: str | None,
    status: str,
    reason: str | None,
    detail: str | None,
    at: float,
) -> None:
    conn.execute(
        session_history.insert().values(
            session_id=session_id,
            kernel_id=kernel_id,
            status=status,
            reason=reason,
            detail=detail,
            at=at,
        )
    )


def find_session(conn: sa.Connection, ref: str, access_key: str | None) -> sa.RowMapping | None:
    """A session by UUID or name, within the owner (``None``: any owner).

    By name, a live session wins over terminated ones, then the newest.
    """
    q = sa.select(sessions)
    if access_key is not None:
        q = q.where(sessions.c.access_key == access_key)
    if is_uuid(ref):
        row = conn.execute(q.where(sessions.c.id == str(uuid.UUID(ref)))).mappings().first()
        if row is not None:
            return row
    q = q.where(sessions.c.name == ref).order_by(
        sessions.c.terminated_at.is_not(None), sessions.c.created_at.desc()
    )
    return conn.execute(q.limit(1)).mappings().first()


def list_sessions(
    conn: sa.Connection,
    access_key: str | None,
    statuses: Iterable[str] | None,
    limit: int,
    offset: int,
    *,
    domain: str | None = None,
) -> list[sa.RowMapping]:
    """Newest first; of one owner (*access_key*), of one *domain*'s keypairs, or of all."""
    q = sa.select(sessions).order_by(sessions.c.created_at.desc()).limit(limit).offset(offset)
    if access_key is not None:
        q = q.where(sessions.c.access_key == access_key)
    if domain is not None:
        in_domain = (
            sa.select(keypairs.c.access_key)
            .outerjoin(users, users.c.uuid == keypairs.c.user)
            .where(sa.func.coalesce(users.c.domain_name, "default") == domain)
        )
        q = q.where(sessions.c.access_key.in_(in_domain))
    if statuses is not None:
        q = q.where(sessions.c.status.in_(list(statuses)))
    return list(conn.execute(q).mappings())


def kernels_of(conn: sa.Connection, session_id: str) -> list[sa.RowMapping]:
    q = sa.select(kernels).where(kernels.c.session_id == session_id).order_by(kernels.c.cluster_idx)
    return list(conn.execute(q).mappings())


def history(conn: sa.Connection, session_id: str) -> list[sa.RowMapping]:
    q = (
        sa.select(session_history)
        .where(session_history.c.session_id == session_id)
        .order_by(session_history.c.id)
    )
    return list(conn.execute(q).mappings())


def set_kernels(
    conn: sa.Connection,
    where: sa.ColumnElement[bool],
    from_states: Iterable[str],
    status: str,
    *,
    reason: str | None = None,
    keep_reason: bool = False,
    now: float | None = None,
    **values: Any,
) -> list[tuple[str, str]]:
    """Move the kernels matching *where* and in *from_states* to *status*.

    Returns ``(kernel_id, session_id)`` of the kernels that moved.  Records the
    kernel transition in the session history.
    """
    now = time.time() if now is None else now
    cond = sa.and_(where, kernels.c.status.in_(list(from_states)))
    moved = [
        (r.id, r.session_id)
        for r in conn.execute(sa.select(kernels.c.id, kernels.c.session_id).where(cond))
    ]
    if not moved:
        return []
    update = dict(values, status=status, status_changed=now)
    if not keep_reason:
        update["status_info"] = reason
    if status in TERMINAL:
        update.setdefault("terminated_at", now)
        update.setdefault("lease_owner", None)
        update.setdefault("lease_until", None)
    conn.execute(kernels.update().where(kernels.c.id.in_([k for k, _ in moved])).values(**update))
    for kernel_id, session_id in moved:
        record(conn, session_id, kernel_id, status, reason, None, now)
    return moved


def release_allocation(conn: sa.Connection, kernel_ids: Iterable[str], now: float) -> None:
    conn.execute(
        allocations.update()
        .where(allocations.c.kernel_id.in_(list(kernel_ids)), allocations.c.released_at.is_(None))
        .values(released_at=now)
    )


def refresh_session(
    conn: sa.Connection, session_id: str, now: float | None = None
) -> StatusChange | None:
    """Derive the session's status from its kernels; write it if it moved."""
    now = time.time() if now is None else now
    sess = conn.execute(sa.select(sessions).where(sessions.c.id == session_id)).mappings().one()
    ks = kernels_of(conn, session_id)
    new = derive_session_status([k["status"] for k in ks])
    if new == sess["status"]:
        return None
    main = next((k for k in ks if k["cluster_role"] == "main"), ks[0])
    reason = next((k["status_info"] for k in ks if k["status_info"]), None)
    values: dict[str, Any] = {"status": new, "status_changed": now, "status_info": reason}
    if new in TERMINAL:
        values["terminated_at"] = now
        values["exit_code"] = main["exit_code"]
    conn.execute(sessions.update().where(sessions.c.id == session_id).values(**values))
    record(conn, session_id, None, new, reason, None, now)
    return StatusChange(
        session_id,
        sess["name"],
        sess["access_key"],
        sess["status"],
        new,
        reason,
        main["exit_code"] if new in TERMINAL else None,
    )
