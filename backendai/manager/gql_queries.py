"""Query resolvers of the admin GraphQL API (sessions, agents, users, keypairs), and who sees what.

A superadmin sees everything; a domain admin sees the users, keypairs and
sessions of their domain; a user sees their own keypair, user record and
sessions.  Agents are for superadmins.  The catalog (policies, resource groups,
images, domains, projects) is in :mod:`gql_catalog`.  Each resolver runs on the
request's one database connection (see :mod:`gql_api`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..db.tables import (
    keypairs,
    sessions,
    user_projects,
    users,
)
from ..errors import InvalidAPIParameters, PermissionDenied
from .agents_api import _kernels_on, load_agents
from .gql_catalog import (
    domain,
    domains_,
    group,
    groups_,
    images_,
    keypair_resource_policies_,
    keypair_resource_policy,
    project_resource_policies,
    scaling_group,
    scaling_groups,
    user_resource_policies,
)
from .gql_context import GqlContext, Info, domain_scope, need_superadmin
from .gql_rows import (
    agent_item,
    jstr,
    keypair_items,
    session_items,
    user_items,
)

__all__ = ["QUERIES"]


def _ctx(info: Info) -> GqlContext:
    return info.context


def _no_filter(filter: str | None, order: str | None) -> None:
    if filter or order:
        raise InvalidAPIParameters(
            f"filter={filter!r} order={order!r}: filter and order expressions are not "
            "supported; list without them (results are newest first)"
        )


def _page(items: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {"items": items, "total_count": total}


def _paged(
    ctx: GqlContext, q: sa.Select[Any], limit: int, offset: int, order: Any
) -> tuple[list[sa.RowMapping], int]:
    if not 1 <= limit <= 100 or offset < 0:
        raise InvalidAPIParameters(
            f"limit={limit} offset={offset}: expected 1 <= limit <= 100 and offset >= 0"
        )
    total = ctx.conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
    rows = list(ctx.conn.execute(q.order_by(order).limit(limit).offset(offset)).mappings())
    return rows, int(total)


# -- sessions -------------------------------------------------------------------


def _session_query(ctx: GqlContext, access_key: str | None, status: str | None) -> sa.Select[Any]:
    caller = ctx.caller
    q = sa.select(sessions)
    if caller.is_superadmin:
        if access_key:
            q = q.where(sessions.c.access_key == access_key)
    elif caller.role == "admin":
        in_domain = (
            sa.select(keypairs.c.access_key)
            .outerjoin(users, users.c.uuid == keypairs.c.user)
            .where(sa.func.coalesce(users.c.domain_name, "default") == caller.domain)
        )
        q = q.where(sessions.c.access_key.in_(in_domain))
        if access_key:
            q = q.where(sessions.c.access_key == access_key)
    else:
        if access_key and access_key != caller.access_key:
            raise PermissionDenied(
                f"access_key={access_key!r}: a user lists only their own sessions"
            )
        q = q.where(sessions.c.access_key == caller.access_key)
    if status:
        q = q.where(sessions.c.status.in_([s.strip().upper() for s in status.split(",")]))
    return q


def compute_session_list(
    info: Info,
    limit: int,
    offset: int,
    status: str | None = None,
    access_key: str | None = None,
    domain_name: str | None = None,
    group_id: str | None = None,
    filter: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    _no_filter(filter, order)
    ctx = _ctx(info)
    q = _session_query(ctx, access_key, status)
    # Narrowing what the caller may see already: another domain's filter finds nothing.
    if domain_name is not None:
        q = q.where(sessions.c.domain_name == domain_name)
    if group_id is not None:
        q = q.where(sessions.c.group_id == str(group_id))
    rows, total = _paged(ctx, q, limit, offset, sessions.c.created_at.desc())
    return _page(session_items(ctx.conn, rows), total)


def compute_session(info: Info, id: str) -> dict[str, Any] | None:
    ctx = _ctx(info)
    rows = list(
        ctx.conn.execute(_session_query(ctx, None, None).where(sessions.c.id == id)).mappings()
    )
    return session_items(ctx.conn, rows)[0] if rows else None


# -- agents ---------------------------------------------------------------------


def _agents(
    ctx: GqlContext, status: str | None, group: str | None, one: str | None = None
) -> list[dict[str, Any]]:
    need_superadmin(ctx, "agents")
    wanted = [s.strip().upper() for s in status.split(",")] if status else []
    found = load_agents(ctx.conn, agent_id=one, statuses=wanted)
    if group is not None:
        found = [a for a in found if a["resource_group"] == group]
    out = []
    for a in found:
        held = _kernels_on(ctx.conn, a["id"])
        containers = [
            {
                "id": k["kernel_id"],
                "session_id": k["session_id"],
                "status": k["status"],
                "container_id": k["container_id"],
                "agent": a["id"],
                "occupied_slots": jstr(k["slots"]),
            }
            for k in held
        ]
        out.append(agent_item(a, containers))
    return out


def agent_list(
    info: Info,
    limit: int,
    offset: int,
    status: str | None = None,
    scaling_group: str | None = None,
    filter: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    _no_filter(filter, order)
    if not 1 <= limit <= 100 or offset < 0:
        raise InvalidAPIParameters(
            f"limit={limit} offset={offset}: expected 1 <= limit <= 100 and offset >= 0"
        )
    found = _agents(_ctx(info), status, scaling_group)
    return _page(found[offset : offset + limit], len(found))


def agents_(
    info: Info, status: str | None = None, scaling_group: str | None = None
) -> list[dict[str, Any]]:
    return _agents(_ctx(info), status, scaling_group)


def agent(info: Info, agent_id: str) -> dict[str, Any] | None:
    found = _agents(_ctx(info), None, None, one=agent_id)
    return found[0] if found else None


# -- users and keypairs -------------------------------------------------------------


def _user_query(
    ctx: GqlContext,
    domain_name: str | None,
    group_id: str | None,
    status: str | None,
    is_active: bool | None,
) -> sa.Select[Any]:
    domain = domain_scope(ctx, "users", domain_name)
    q = sa.select(users)
    if domain is not None:
        q = q.where(users.c.domain_name == domain)
    if group_id is not None:
        members = sa.select(user_projects.c.user_uuid).where(
            user_projects.c.project_id == str(group_id)
        )
        q = q.where(users.c.uuid.in_(members))
    if status is not None:
        q = q.where(users.c.status == status.lower())
    if is_active is not None:
        q = q.where((users.c.status == "active") == is_active)
    return q


def user_list(
    info: Info,
    limit: int,
    offset: int,
    domain_name: str | None = None,
    group_id: str | None = None,
    is_active: bool | None = None,
    status: str | None = None,
    filter: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    _no_filter(filter, order)
    ctx = _ctx(info)
    q = _user_query(ctx, domain_name, group_id, status, is_active)
    rows, total = _paged(ctx, q, limit, offset, users.c.created_at)
    return _page(user_items(ctx.conn, rows), total)


def users_(
    info: Info,
    domain_name: str | None = None,
    group_id: str | None = None,
    is_active: bool | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    q = _user_query(ctx, domain_name, group_id, status, is_active).order_by(users.c.created_at)
    return user_items(ctx.conn, list(ctx.conn.execute(q).mappings()))


def _one_user(ctx: GqlContext, column: sa.Column[str], value: str | None) -> dict[str, Any] | None:
    """One user: yourself; a domain admin also their domain's; a superadmin anyone."""
    if value is None:
        column, value = users.c.uuid, ctx.caller.user_uuid
    q = sa.select(users).where(column == value)
    if ctx.caller.role == "admin":
        q = q.where(users.c.domain_name == ctx.caller.domain)
    elif not ctx.caller.is_superadmin:
        q = q.where(users.c.uuid == ctx.caller.user_uuid)
    rows = list(ctx.conn.execute(q).mappings())
    return user_items(ctx.conn, rows)[0] if rows else None


def user(
    info: Info, domain_name: str | None = None, email: str | None = None
) -> dict[str, Any] | None:
    return _one_user(_ctx(info), users.c.email, email)


def user_from_uuid(
    info: Info, domain_name: str | None = None, user_id: str | None = None
) -> dict[str, Any] | None:
    return _one_user(_ctx(info), users.c.uuid, user_id)


def _keypair_query(
    ctx: GqlContext, domain_name: str | None, email: str | None, is_active: bool | None
) -> sa.Select[Any]:
    domain = domain_scope(ctx, "keypairs", domain_name)
    q = sa.select(keypairs).outerjoin(users, users.c.uuid == keypairs.c.user)
    if domain is not None:
        q = q.where(sa.func.coalesce(users.c.domain_name, "default") == domain)
    if email is not None:
        q = q.where(keypairs.c.user_id == email)
    if is_active is not None:
        q = q.where(keypairs.c.is_active.is_(is_active))
    return q


def keypair_list(
    info: Info,
    limit: int,
    offset: int,
    domain_name: str | None = None,
    email: str | None = None,
    is_active: bool | None = None,
    filter: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    _no_filter(filter, order)
    ctx = _ctx(info)
    q = _keypair_query(ctx, domain_name, email, is_active)
    rows, total = _paged(ctx, q, limit, offset, keypairs.c.created_at)
    return _page(keypair_items(ctx.conn, rows, ctx.default_rate_limit), total)


def keypairs_(
    info: Info,
    domain_name: str | None = None,
    email: str | None = None,
    is_active: bool | None = None,
) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    q = _keypair_query(ctx, domain_name, email, is_active).order_by(keypairs.c.created_at)
    return keypair_items(ctx.conn, list(ctx.conn.execute(q).mappings()), ctx.default_rate_limit)


def keypair(
    info: Info, domain_name: str | None = None, access_key: str | None = None
) -> dict[str, Any] | None:
    ctx = _ctx(info)
    key = access_key or ctx.caller.access_key
    q = sa.select(keypairs).where(keypairs.c.access_key == key)
    if key != ctx.caller.access_key:
        q = _keypair_query(ctx, None, None, None).where(keypairs.c.access_key == key)
    rows = list(ctx.conn.execute(q).mappings())
    return keypair_items(ctx.conn, rows, ctx.default_rate_limit)[0] if rows else None


QUERIES: dict[str, Callable[..., Any]] = {
    "compute_session_list": compute_session_list,
    "compute_session": compute_session,
    "agent_list": agent_list,
    "agents": agents_,
    "agent": agent,
    "user": user,
    "user_from_uuid": user_from_uuid,
    "users": users_,
    "user_list": user_list,
    "keypair": keypair,
    "keypairs": keypairs_,
    "keypair_list": keypair_list,
    "keypair_resource_policy": keypair_resource_policy,
    "keypair_resource_policies": keypair_resource_policies_,
    "user_resource_policies": user_resource_policies,
    "project_resource_policies": project_resource_policies,
    "scaling_group": scaling_group,
    "scaling_groups": scaling_groups,
    "images": images_,
    "domain": domain,
    "domains": domains_,
    "group": group,
    "groups": groups_,
}
