"""Admin GraphQL resolvers for the catalog: resource policies, resource groups, images,
domains and projects (see :mod:`gql_queries` for who may see what)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..db.tables import (
    agents,
    domains,
    images,
    keypair_resource_policies,
    keypairs,
    projects,
    resource_groups,
    sgroups_for_domains,
    sgroups_for_projects,
)
from ..db.tables import project_resource_policies as project_resource_policies_table
from ..db.tables import user_resource_policies as user_resource_policies_table
from ..errors import NotFound
from .gql_context import GqlContext, Info, domain_scope, need_admin, need_superadmin
from .gql_rows import image_items, jstr, policy_item
from .session_api import iso

__all__ = [
    "domain",
    "domains_",
    "folder_policies",
    "group",
    "groups_",
    "images_",
    "keypair_resource_policies_",
    "keypair_resource_policy",
    "project_resource_policies",
    "scaling_group",
    "scaling_groups",
    "user_resource_policies",
]


def _ctx(info: Info) -> GqlContext:
    return info.context


def keypair_resource_policies_(info: Info) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    need_admin(ctx, "keypair_resource_policies")
    q = sa.select(keypair_resource_policies).order_by(keypair_resource_policies.c.name)
    return [policy_item(p) for p in ctx.conn.execute(q).mappings()]


def keypair_resource_policy(info: Info, name: str | None = None) -> dict[str, Any] | None:
    ctx = _ctx(info)
    own = ctx.conn.execute(
        sa.select(keypairs.c.resource_policy).where(keypairs.c.access_key == ctx.caller.access_key)
    ).scalar()
    if name is None:
        name = own
    elif name != own:
        need_admin(ctx, f"keypair_resource_policy {name!r}")
    row = (
        ctx.conn.execute(
            sa.select(keypair_resource_policies).where(keypair_resource_policies.c.name == name)
        )
        .mappings()
        .first()
    )
    return None if row is None else policy_item(row)


def folder_policies(info: Info, table: sa.Table, name: str | None = None) -> list[dict[str, Any]]:
    need_admin(_ctx(info), table.name)
    q = sa.select(table).order_by(table.c.name)
    if name is not None:
        q = q.where(table.c.name == name)
    return [
        {
            "name": p["name"],
            "created_at": iso(p["created_at"]),
            "max_vfolder_count": p["max_vfolder_count"],
            "max_quota_scope_size": p["max_quota_scope_size"],
        }
        for p in _ctx(info).conn.execute(q).mappings()
    ]


def user_resource_policies(info: Info) -> list[dict[str, Any]]:
    return folder_policies(info, user_resource_policies_table)


def project_resource_policies(info: Info) -> list[dict[str, Any]]:
    return folder_policies(info, project_resource_policies_table)


def _group_item(g: sa.RowMapping) -> dict[str, Any]:
    return {
        "name": g["name"],
        "description": g["description"],
        "is_active": g["is_active"],
        "is_public": True,
        "created_at": iso(g["created_at"]),
        "driver": "static",
        "driver_opts": jstr({}),
        "scheduler": g["scheduler"],
        "scheduler_opts": jstr({"agent_selector": g["agent_selector"], **(g["options"] or {})}),
        "use_host_network": False,
        "wsproxy_addr": None,
        "wsproxy_api_token": None,
    }


def scaling_groups(
    info: Info, name: str | None = None, is_active: bool | None = None
) -> list[dict[str, Any]]:
    need_superadmin(_ctx(info), "scaling_groups")
    q = sa.select(resource_groups).order_by(resource_groups.c.name)
    if name is not None:
        q = q.where(resource_groups.c.name == name)
    if is_active is not None:
        q = q.where(resource_groups.c.is_active.is_(is_active))
    return [_group_item(g) for g in _ctx(info).conn.execute(q).mappings()]


def scaling_group(info: Info, name: str | None = None) -> dict[str, Any] | None:
    found = scaling_groups(info, name=name)
    return found[0] if found else None


def images_(
    info: Info,
    is_installed: bool | None = None,
    is_operation: bool | None = None,
    image_filters: list[str] | None = None,
) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    if is_operation:
        need_admin(ctx, "images(is_operation: true)")
    installed: set[str] = set()
    for names in ctx.conn.execute(
        sa.select(agents.c.images).where(agents.c.status == "ALIVE")
    ).scalars():
        installed.update(names or [])
    rows = list(ctx.conn.execute(sa.select(images).order_by(images.c.name)).mappings())
    items = image_items(ctx.conn, rows, installed)
    if is_installed is not None:
        items = [i for i in items if i["installed"] == is_installed]
    return items


def _reach(ctx: GqlContext, table: sa.Table, column: sa.Column[str], value: str) -> list[str]:
    return sorted(
        ctx.conn.execute(sa.select(table.c.scaling_group).where(column == value)).scalars()
    )


def domains_(info: Info, is_active: bool | None = None) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    scope = domain_scope(ctx, "domains", None)
    q = sa.select(domains).order_by(domains.c.name)
    if scope is not None:
        q = q.where(domains.c.name == scope)
    if is_active is not None:
        q = q.where(domains.c.is_active.is_(is_active))
    return [
        {
            "name": d["name"],
            "description": d["description"],
            "is_active": d["is_active"],
            "created_at": iso(d["created_at"]),
            "modified_at": iso(d["created_at"]),
            "total_resource_slots": jstr(d["total_resource_slots"] or {}),
            "allowed_vfolder_hosts": jstr(d["allowed_vfolder_hosts"] or {}),
            "allowed_docker_registries": [],
            "integration_id": None,
            "scaling_groups": _reach(
                ctx, sgroups_for_domains, sgroups_for_domains.c.domain, d["name"]
            ),
        }
        for d in ctx.conn.execute(q).mappings()
    ]


def domain(info: Info, name: str | None = None) -> dict[str, Any] | None:
    wanted = name or _ctx(info).caller.domain
    found = [d for d in domains_(info) if d["name"] == wanted]
    if not found and name is not None:
        raise NotFound(f"domain {name!r} does not exist or is not yours to see")
    return found[0] if found else None


def groups_(
    info: Info, domain_name: str | None = None, is_active: bool | None = None
) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    scope = domain_scope(ctx, "groups", domain_name)
    q = sa.select(projects).order_by(projects.c.domain_name, projects.c.name)
    if scope is not None:
        q = q.where(projects.c.domain_name == scope)
    if is_active is not None:
        q = q.where(projects.c.is_active.is_(is_active))
    return [
        {
            "id": p["id"],
            "name": p["name"],
            "description": p["description"],
            "is_active": p["is_active"],
            "created_at": iso(p["created_at"]),
            "modified_at": iso(p["created_at"]),
            "domain_name": p["domain_name"],
            "total_resource_slots": jstr(p["total_resource_slots"] or {}),
            "allowed_vfolder_hosts": jstr({}),
            "integration_id": None,
            "resource_policy": p["resource_policy"],
            "scaling_groups": _reach(
                ctx, sgroups_for_projects, sgroups_for_projects.c.project_id, p["id"]
            ),
        }
        for p in ctx.conn.execute(q).mappings()
    ]


def group(info: Info, id: str, domain_name: str | None = None) -> dict[str, Any] | None:
    found = [g for g in groups_(info, domain_name) if g["id"] == str(id)]
    return found[0] if found else None
