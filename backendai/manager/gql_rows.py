"""Database rows as the admin GraphQL objects (dicts the default resolver reads).

Pure shaping plus the few joins each object needs; who may see what is decided
by the resolvers in :mod:`gql_queries`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from ..db.tables import (
    allocations,
    image_aliases,
    kernels,
    keypairs,
    projects,
    session_dependencies,
    sessions,
    user_projects,
    users,
)
from ..sched import ResourceSlots
from .session_api import iso
from .states import TERMINAL

__all__ = [
    "agent_item",
    "container_item",
    "image_items",
    "jstr",
    "keypair_items",
    "policy_item",
    "session_items",
    "user_items",
]


def jstr(value: Any) -> str:
    """A JSONString value: the official client decodes it with json.loads."""
    return json.dumps(value)


def _slots_json(raw: Any) -> str:
    return jstr(ResourceSlots.from_json(raw or {}).to_json())


def container_item(k: sa.RowMapping, occupied: Any) -> dict[str, Any]:
    return {
        "id": k["id"],
        "cluster_role": k["cluster_role"],
        "cluster_idx": k["cluster_idx"],
        "cluster_hostname": f"{k['cluster_role']}{k['cluster_idx']}",
        "session_id": k["session_id"],
        "image": k["image"],
        "registry": "",
        "status": k["status"],
        "status_info": k["status_info"] or "",
        "status_data": jstr({}),
        "status_changed": iso(k["status_changed"]),
        "agent": k["agent_id"],
        "container_id": k["container_id"],
        "resource_opts": jstr({}),
        "occupied_slots": _slots_json(occupied),
        "preopen_ports": [],
        "live_stat": None,
        "last_stat": None,
    }


def _owners(conn: sa.Connection, access_keys: Iterable[str]) -> dict[str, Any]:
    rows = conn.execute(
        sa.select(keypairs.c.access_key, keypairs.c.user_id, users.c.uuid, users.c.domain_name)
        .select_from(keypairs.outerjoin(users, users.c.uuid == keypairs.c.user))
        .where(keypairs.c.access_key.in_(sorted(set(access_keys))))
    )
    return {r.access_key: r for r in rows}


def session_items(conn: sa.Connection, rows: Sequence[sa.RowMapping]) -> list[dict[str, Any]]:
    ids = [s["id"] for s in rows]
    ks: dict[str, list[sa.RowMapping]] = defaultdict(list)
    for k in conn.execute(
        sa.select(kernels).where(kernels.c.session_id.in_(ids)).order_by(kernels.c.cluster_idx)
    ).mappings():
        ks[k["session_id"]].append(k)
    live: dict[str, Any] = {
        r.kernel_id: r.slots
        for r in conn.execute(
            sa.select(allocations.c.kernel_id, allocations.c.slots).where(
                allocations.c.kernel_id.in_([k["id"] for group in ks.values() for k in group]),
                allocations.c.released_at.is_(None),
            )
        )
    }
    deps: dict[str, list[dict[str, str]]] = defaultdict(list)
    dep_q = (
        sa.select(session_dependencies.c.session_id, sessions.c.id, sessions.c.name)
        .join(sessions, sessions.c.id == session_dependencies.c.depends_on)
        .where(session_dependencies.c.session_id.in_(ids))
    )
    for r in conn.execute(dep_q):
        deps[r.session_id].append({"id": r.id, "name": r.name})
    owners = _owners(conn, [s["access_key"] for s in rows])
    project_names = dict(
        conn.execute(
            sa.select(projects.c.id, projects.c.name).where(
                projects.c.id.in_([s["group_id"] for s in rows if s["group_id"]])
            )
        ).all()
    )
    out = []
    for s in rows:
        mine = ks.get(s["id"], [])
        main = next((k for k in mine if k["cluster_role"] == "main"), mine[0] if mine else None)
        occupied = ResourceSlots()
        for k in mine:
            occupied = occupied + ResourceSlots.from_json(live.get(k["id"]) or {})
        owner = owners.get(s["access_key"])
        email = owner.user_id if owner else None
        uid = owner.uuid if owner else None
        ended = s["status"] in TERMINAL
        result = "UNDEFINED"
        if ended and s["exit_code"] is not None:
            result = "SUCCESS" if s["exit_code"] == 0 else "FAILURE"
        out.append(
            {
                "id": s["id"],
                "session_id": s["id"],
                "main_kernel_id": main["id"] if main else None,
                "tag": s["tag"],
                "name": s["name"],
                "type": str(s["session_type"]).upper(),
                "image": s["image"],
                "registry": "",
                "cluster_template": None,
                "cluster_mode": str(s["cluster_mode"]).upper().replace("-", "_"),
                "cluster_size": s["cluster_size"],
                "domain_name": s["domain_name"],
                "group_name": project_names.get(s["group_id"]),
                "group_id": s["group_id"],
                "agent_ids": sorted({k["agent_id"] for k in mine if k["agent_id"]}),
                "user_email": email,
                "user_id": uid,
                "access_key": s["access_key"],
                "created_user_email": email,
                "created_user_id": uid,
                "status": s["status"],
                "status_info": s["status_info"] or "",
                "status_data": jstr({}),
                "status_changed": iso(s["status_changed"]),
                "created_at": iso(s["created_at"]),
                "terminated_at": iso(s["terminated_at"]),
                "starts_at": iso(s["starts_at"]),
                "scheduled_at": None,
                "startup_command": s["startup_command"],
                "result": result,
                "resource_opts": jstr({}),
                "scaling_group": s["resource_group"],
                "service_ports": jstr([]),
                "mounts": [],
                "occupying_slots": jstr(occupied.to_json()),
                "occupied_slots": jstr(occupied.to_json()),
                "requested_slots": _slots_json(s["requested_slots"]),
                "containers": [container_item(k, live.get(k["id"])) for k in mine],
                "dependencies": deps.get(s["id"], []),
                "abusing_reports": [],
                "idle_checks": jstr({}),
            }
        )
    return out


def agent_item(a: dict[str, Any], containers: list[dict[str, Any]]) -> dict[str, Any]:
    """An agent from ``agents_api.load_agents`` (capacity, occupancy, topology)."""
    capacity = ResourceSlots.from_json(a["capacity"])
    occupied = ResourceSlots.from_json(a["occupied"])
    cpu_cap = capacity["cpu"]
    return {
        "id": a["id"],
        "status": a["status"],
        "status_changed": a["status_changed"],
        "region": "local",
        "architecture": a["architecture"],
        "scaling_group": a["resource_group"],
        "schedulable": a["status"] == "ALIVE",
        "available_slots": jstr(capacity.to_json()),
        "occupied_slots": jstr(occupied.to_json()),
        "addr": a["rpc_addr"],
        "first_contact": a["first_contact"],
        "lost_at": a["status_changed"] if a["status"] == "LOST" else None,
        "live_stat": None,
        "version": a["version"],
        "compute_plugins": jstr({"backend": a["backend"]}),
        "hardware_metadata": jstr(a["topology"]),
        "compute_containers": containers,
        "local_config": jstr({"backend": a["backend"], "rpc_addr": a["rpc_addr"]}),
        # Allocated shares (we do not sample live utilisation): cores and bytes held.
        "cpu_cur_pct": float(occupied["cpu"] / cpu_cap * 100) if cpu_cap else 0.0,
        "mem_cur_bytes": int(occupied["mem"]),
    }


def user_items(conn: sa.Connection, rows: Sequence[sa.RowMapping]) -> list[dict[str, Any]]:
    uids = [u["uuid"] for u in rows]
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in conn.execute(
        sa.select(user_projects.c.user_uuid, projects.c.id, projects.c.name)
        .join(projects, projects.c.id == user_projects.c.project_id)
        .where(user_projects.c.user_uuid.in_(uids))
        .order_by(projects.c.name)
    ):
        groups[r.user_uuid].append({"id": r.id, "name": r.name})
    main_keys: dict[str, str] = {}
    for k in conn.execute(
        sa.select(keypairs.c.user, keypairs.c.access_key)
        .where(keypairs.c.user.in_(uids), keypairs.c.is_active.is_(True))
        .order_by(keypairs.c.created_at.desc())
    ):
        main_keys[k.user] = k.access_key  # the oldest active one wins
    return [
        {
            "uuid": u["uuid"],
            "id": u["uuid"],
            "username": u["username"],
            "email": u["email"],
            "need_password_change": u["need_password_change"],
            "full_name": u["full_name"],
            "description": u["description"],
            "is_active": u["status"] == "active",
            "status": u["status"],
            "status_info": None,
            "created_at": iso(u["created_at"]),
            "modified_at": iso(u["created_at"]),
            "domain_name": u["domain_name"],
            "role": u["role"],
            "resource_policy": u["resource_policy"],
            "groups": groups.get(u["uuid"], []),
            "allowed_client_ip": [],
            "totp_activated": False,
            "sudo_session_enabled": False,
            "main_access_key": main_keys.get(u["uuid"]),
        }
        for u in rows
    ]


def keypair_items(
    conn: sa.Connection, rows: Sequence[sa.RowMapping], default_rate_limit: int
) -> list[dict[str, Any]]:
    """*default_rate_limit*: what a keypair whose own rate_limit is 0 gets."""
    keys = [k["access_key"] for k in rows]
    names = {
        r.uuid: r.full_name
        for r in conn.execute(
            sa.select(users.c.uuid, users.c.full_name).where(
                users.c.uuid.in_([k["user"] for k in rows if k["user"]])
            )
        )
    }
    live: dict[str, int] = dict(
        conn.execute(
            sa.select(sessions.c.access_key, sa.func.count())
            .where(sessions.c.access_key.in_(keys), sessions.c.status.not_in(TERMINAL))
            .group_by(sessions.c.access_key)
        ).all()
    )
    projects_of: dict[str, list[str]] = defaultdict(list)
    for r in conn.execute(
        sa.select(user_projects.c.user_uuid, projects.c.name)
        .join(projects, projects.c.id == user_projects.c.project_id)
        .order_by(projects.c.name)
    ):
        projects_of[r.user_uuid].append(r.name)
    return [
        {
            "user_id": k["user_id"],
            "user_info": {"email": k["user_id"], "full_name": names.get(k["user"], "")},
            "projects": projects_of.get(k["user"], []),
            "access_key": k["access_key"],
            "secret_key": k["secret_key"],
            "is_active": k["is_active"],
            "is_admin": k["role"] in ("superadmin", "admin"),
            "created_at": iso(k["created_at"]),
            "modified_at": iso(k["created_at"]),
            "last_used": iso(k["last_used"]),
            "resource_policy": k["resource_policy"],
            "rate_limit": k["rate_limit"] or default_rate_limit,
            "concurrency_used": live.get(k["access_key"], 0),
            "num_queries": 0,
            "ssh_public_key": None,
            "ssh_private_key": None,
            "dotfiles": None,
            "bootstrap_script": None,
        }
        for k in rows
    ]


def policy_item(p: sa.RowMapping) -> dict[str, Any]:
    return {
        "name": p["name"],
        "created_at": iso(p["created_at"]),
        "default_for_unspecified": "UNLIMITED",
        "total_resource_slots": _slots_json(p["total_resource_slots"]),
        "max_session_lifetime": p["max_session_lifetime"],
        "max_concurrent_sessions": p["max_concurrent_sessions"],
        "max_pending_session_count": p["max_pending_session_count"],
        "max_concurrent_sftp_sessions": None,
        "max_containers_per_session": p["max_containers_per_session"],
        "idle_timeout": p["idle_timeout"],
        # Folder limits live in user and project policies; 0 is "none here" to the client.
        "max_vfolder_count": 0,
        "max_vfolder_size": 0,
        "allowed_vfolder_hosts": jstr(p["allowed_vfolder_hosts"] or {}),
    }


def image_items(
    conn: sa.Connection, rows: Sequence[sa.RowMapping], installed: set[str]
) -> list[dict[str, Any]]:
    """*installed*: the images some agent reports having."""
    aliases: dict[str, list[str]] = defaultdict(list)
    for r in conn.execute(sa.select(image_aliases).order_by(image_aliases.c.alias)):
        aliases[r.target].append(r.alias)
    return [
        {
            "name": i["name"],
            "registry": i["registry"],
            "architecture": i["architecture"],
            "tag": i["tag"] or i["name"].rpartition(":")[2],
            "digest": i["digest"],
            "size_bytes": i["size_bytes"],
            "aliases": aliases.get(i["name"], []),
            "labels": jstr(i["labels"] or {}),
            "installed": i["name"] in installed,
        }
        for i in rows
    ]
