"""Units of work on resource policies: what a keypair, a user or a project may hold.

Sync functions over one Connection, like :mod:`accounts`; bad values raise an
:class:`~backendai.errors.APIError` naming the value, and nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ..db.tables import keypair_resource_policies, project_resource_policies, user_resource_policies
from ..errors import InvalidAPIParameters
from ..sched import ResourceSlots
from .accounts import check_name, fresh

__all__ = ["create_keypair_policy", "create_user_policy"]


_POLICY_INTS = (
    "max_concurrent_sessions",
    "max_pending_session_count",
    "max_session_lifetime",
    "idle_timeout",
    "max_containers_per_session",
)


def create_keypair_policy(
    conn: sa.Connection, name: str, fields: Mapping[str, Any], *, now: float | None = None
) -> None:
    """Create keypair resource policy *name*; *fields* are its columns (unknown ones refused)."""
    check_name("policy name", name)
    allowed = {*_POLICY_INTS, "total_resource_slots", "allowed_vfolder_hosts"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidAPIParameters(
            f"{unknown[0]}: unknown policy field; known fields: {', '.join(sorted(allowed))}"
        )
    values: dict[str, Any] = {
        "max_session_lifetime": 0,
        "idle_timeout": 0,
        "max_containers_per_session": 0,
    }
    for key in _POLICY_INTS:
        value = fields.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidAPIParameters(f"{key}: invalid value {value!r}; expected an integer >= 0")
        values[key] = value
    slots = fields.get("total_resource_slots") or {}
    if not isinstance(slots, Mapping):
        raise InvalidAPIParameters(
            f"total_resource_slots: invalid value {slots!r}; expected an object such as "
            '{"cpu": 4, "mem": "8g"}'
        )
    values["total_resource_slots"] = ResourceSlots.parse(dict(slots)).to_json()
    hosts = fields.get("allowed_vfolder_hosts") or {}
    if not isinstance(hosts, Mapping):
        raise InvalidAPIParameters(
            f"allowed_vfolder_hosts: invalid value {hosts!r}; expected an object host -> permissions"
        )
    values["allowed_vfolder_hosts"] = dict(hosts)
    fresh(conn, keypair_resource_policies.c.name, name, "keypair resource policy")
    conn.execute(
        keypair_resource_policies.insert().values(
            name=name, created_at=time.time() if now is None else now, **values
        )
    )


def create_user_policy(
    conn: sa.Connection,
    name: str,
    *,
    project: bool = False,
    max_vfolder_count: int | None = None,
    max_quota_scope_size: int | None = None,
    now: float | None = None,
) -> None:
    """Create a user (or, with *project*, a project) resource policy."""
    check_name("policy name", name)
    table = project_resource_policies if project else user_resource_policies
    for key, value in (
        ("max_vfolder_count", max_vfolder_count),
        ("max_quota_scope_size", max_quota_scope_size),
    ):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidAPIParameters(f"{key}: invalid value {value!r}; expected an integer >= 0")
    fresh(conn, table.c.name, name, f"{'project' if project else 'user'} resource policy")
    conn.execute(
        table.insert().values(
            name=name,
            max_vfolder_count=max_vfolder_count,
            max_quota_scope_size=max_quota_scope_size,
            created_at=time.time() if now is None else now,
        )
    )
