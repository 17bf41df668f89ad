"""What a keypair may enqueue: reachable resource groups and its resource policy.

Checked when a session is enqueued, inside the enqueue transaction; the
scheduler checks the running limits again at each pass (``policy_limits``).
A superadmin may use any resource group; a keypair made before accounts
existed (no user) is not limited by groups.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..db.tables import keypair_resource_policies, keypairs, projects, sessions, user_projects
from ..errors import InsufficientResources, InvalidAPIParameters, PermissionDenied, TooManyRequests
from ..sched import KeypairLimits, ResourceSlots
from ..sched.slots import format_amount
from .accounts import KeypairOwner, keypair_owner, reachable_resource_groups

__all__ = ["admit", "keypair_policy", "policy_limits"]


def keypair_policy(conn: sa.Connection, access_key: str) -> sa.RowMapping | None:
    """The keypair's resource policy row, if it has one."""
    return (
        conn.execute(
            sa.select(keypair_resource_policies)
            .join(keypairs, keypairs.c.resource_policy == keypair_resource_policies.c.name)
            .where(keypairs.c.access_key == access_key)
        )
        .mappings()
        .first()
    )


def _quota(policy: sa.RowMapping) -> dict[str, Decimal] | None:
    raw: dict[str, Any] = policy["total_resource_slots"] or {}
    return {k: Decimal(str(v)) for k, v in raw.items()} or None


def policy_limits(conn: sa.Connection, access_keys: set[str]) -> dict[str, KeypairLimits]:
    """The scheduler's view of each keypair's policy (keypairs with none are left out)."""
    out: dict[str, KeypairLimits] = {}
    for key in access_keys:
        policy = keypair_policy(conn, key)
        if policy is None:
            continue
        out[key] = KeypairLimits(
            max_concurrent_sessions=policy["max_concurrent_sessions"],
            max_pending_sessions=policy["max_pending_session_count"],
            total_resource_slots=_quota(policy),
            source=f"keypair resource policy {policy['name']!r}",
        )
    return out


def _project(
    conn: sa.Connection, owner: KeypairOwner, domain: str | None, project: str | None
) -> tuple[str, str | None]:
    """The domain and project id a session is for; refuses what is not the owner's."""
    if domain is not None and domain != owner.domain:
        raise PermissionDenied(
            f"domain {domain!r}: keypair {owner.access_key} belongs to domain {owner.domain!r}"
        )
    q = sa.select(projects.c.id, projects.c.name).where(projects.c.domain_name == owner.domain)
    if project is not None:
        q = q.where(sa.or_(projects.c.name == project, projects.c.id == project))
    if owner.user_uuid is not None and owner.role != "superadmin":
        q = q.join(user_projects, user_projects.c.project_id == projects.c.id).where(
            user_projects.c.user_uuid == owner.user_uuid
        )
    # Unnamed: the member's "default" project if any, else the first by name.
    row = conn.execute(q.order_by(projects.c.name != "default", projects.c.name)).first()
    if row is None and project is not None:
        raise PermissionDenied(
            f"group {project!r}: keypair {owner.access_key} is not a member of such a project "
            f"in domain {owner.domain!r}"
        )
    return owner.domain, (row.id if row is not None else None)


def admit(
    conn: sa.Connection,
    access_key: str,
    group: str,
    slots: ResourceSlots,
    cluster_size: int,
    domain: str | None = None,
    project: str | None = None,
) -> tuple[str | None, str | None]:
    """Refuse a session the keypair may not enqueue, naming the rule.

    Returns the session's domain and project (group) id.
    """
    owner = keypair_owner(conn, access_key)
    if owner is None:
        return None, None
    placed = _project(conn, owner, domain, project)
    if owner.role != "superadmin" and owner.user_uuid is not None:
        allowed = reachable_resource_groups(conn, access_key)
        if group not in allowed:
            raise PermissionDenied(
                f"resource group {group!r} is not open to keypair {access_key} (not linked to "
                f"its domain, projects or keypair); allowed: {', '.join(sorted(allowed)) or 'none'}"
            )
    policy = keypair_policy(conn, access_key)
    if policy is None:
        return placed
    name = policy["name"]
    most = policy["max_containers_per_session"]
    if most and cluster_size > most:
        raise InvalidAPIParameters(
            f"clusterSize={cluster_size}: keypair resource policy {name!r} allows at most "
            f"{most} containers per session"
        )
    quota = _quota(policy)
    total = ResourceSlots()
    for _ in range(cluster_size):
        total = total + slots
    over = sorted(s for s, limit in (quota or {}).items() if total[s] > limit)
    if over and quota:
        shown = " ".join(f"{s}={format_amount(s, quota[s])}" for s in over)
        raise InsufficientResources(
            f"the session asks for {total.human()}, more than keypair resource policy {name!r} "
            f"allows in all ({shown}); it could never start"
        )
    most_pending = policy["max_pending_session_count"]
    if most_pending is not None:
        pending = conn.execute(
            sa.select(sa.func.count()).where(
                sessions.c.access_key == access_key, sessions.c.status == "PENDING"
            )
        ).scalar_one()
        if pending >= most_pending:
            raise TooManyRequests(
                f"keypair {access_key} has {pending} pending sessions; keypair resource policy "
                f"{name!r} allows at most {most_pending}"
            )
    return placed
