"""Mutation resolvers of the admin GraphQL API: users, keypairs, keypair resource policies.

A refused permission is a GraphQL error; bad input is ``{ok: false, msg}`` (as
Backend.AI answers), and the mutation's writes are rolled back (a savepoint).
Only a superadmin changes resource policies or moves a keypair to another
policy or rate limit: nobody raises their own limits.  A domain admin manages
the users and keypairs of their own domain and cannot make a superadmin.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from ..db.tables import (
    keypair_resource_policies,
    keypairs,
    project_resource_policies,
    user_resource_policies,
    users,
)
from ..errors import APIError, InvalidAPIParameters, NotFound, PermissionDenied
from .accounts import (
    create_domain,
    create_keypair,
    create_project,
    create_user,
    keypair_owner,
    resolve_user,
)
from .gql_catalog import domain, folder_policies, group
from .gql_context import GqlContext, Info, need_admin, need_superadmin
from .gql_rows import keypair_items, policy_item, user_items
from .policies import create_keypair_policy, create_user_policy

__all__ = ["MUTATIONS"]

log = logging.getLogger(__name__)


def _attempt(ctx: GqlContext, what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run *fn* in a savepoint; bad input becomes ``ok: false`` with the message."""
    savepoint = ctx.conn.begin_nested()
    try:
        result = fn()
    except PermissionDenied:
        savepoint.rollback()
        raise
    except APIError as e:
        savepoint.rollback()
        log.info("%s by %s refused: %s", what, ctx.caller.access_key, e)
        return {"ok": False, "msg": str(e)}
    savepoint.commit()
    log.info("%s by %s", what, ctx.caller.access_key)
    return {"ok": True, "msg": "success", **result}


def _check_domain(ctx: GqlContext, domain: str, what: str) -> None:
    if not ctx.caller.is_superadmin and domain != ctx.caller.domain:
        raise PermissionDenied(
            f"{what}: domain {domain!r} is outside {ctx.caller.domain!r}, the only domain "
            f"admin {ctx.caller.access_key} manages"
        )


def _json_field(props: Mapping[str, Any], key: str) -> Any:
    raw = props.get(key)
    if raw is None or isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        raise InvalidAPIParameters(
            f"{key}: invalid value {raw!r}; expected a JSON object such as '{{\"cpu\": 4}}'"
        ) from None


def create_user_(info: Info, email: str, props: dict[str, Any]) -> dict[str, Any]:
    ctx = info.context
    need_admin(ctx, "create_user")
    domain = props["domain_name"]
    _check_domain(ctx, domain, f"create_user {email!r}")
    role = (props.get("role") or "user").lower()
    if role == "superadmin" and not ctx.caller.is_superadmin:
        raise PermissionDenied(f"create_user {email!r}: only a superadmin makes a superadmin")
    _unsupported(props, "allowed_client_ip", "totp_activated", "sudo_session_enabled")
    status = (props.get("status") or "").lower() or (
        "inactive" if props.get("is_active") is False else "active"
    )

    def run() -> dict[str, Any]:
        uid = create_user(
            ctx.conn,
            email,
            props["password"],
            username=props.get("username") or None,
            full_name=props.get("full_name") or "",
            role=role,
            status=status,
            domain=domain,
            resource_policy=props.get("resource_policy") or "default",
            project_ids=[str(g) for g in props.get("group_ids") or []],
            need_password_change=bool(props.get("need_password_change")),
        )
        create_keypair(ctx.conn, uid)  # a new user can log in and sign requests at once
        row = ctx.conn.execute(sa.select(users).where(users.c.uuid == uid)).mappings().one()
        return {"user": user_items(ctx.conn, [row])[0]}

    return _attempt(ctx, f"create_user {email}", run)


def _unsupported(props: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if props.get(key):
            raise InvalidAPIParameters(
                f"{key}: invalid value {props[key]!r}; not supported here (leave it unset)"
            )


def create_domain_(info: Info, name: str, props: dict[str, Any]) -> dict[str, Any]:
    ctx = info.context
    need_superadmin(ctx, "create_domain")

    def run() -> dict[str, Any]:
        _unsupported(props, "total_resource_slots", "allowed_docker_registries", "integration_id")
        create_domain(
            ctx.conn,
            name,
            description=props.get("description") or "",
            resource_groups_=props.get("scaling_groups") or [],
        )
        return {"domain": domain(info, name)}

    return _attempt(ctx, f"create_domain {name}", run)


def create_group_(info: Info, name: str, props: dict[str, Any]) -> dict[str, Any]:
    ctx = info.context
    need_admin(ctx, "create_group")
    _check_domain(ctx, props["domain_name"], f"create_group {name!r}")
    if props.get("scaling_groups") and not ctx.caller.is_superadmin:
        raise PermissionDenied(f"create_group {name!r}: only a superadmin opens resource groups")

    def run() -> dict[str, Any]:
        _unsupported(props, "total_resource_slots", "integration_id")
        project_id = create_project(
            ctx.conn,
            props["domain_name"],
            name,
            description=props.get("description") or "",
            resource_policy=props.get("resource_policy") or "default",
            resource_groups_=props.get("scaling_groups") or [],
        )
        return {"group": group(info, project_id)}

    return _attempt(ctx, f"create_group {name}", run)


def _create_folder_policy(
    info: Info, name: str, props: dict[str, Any], *, project: bool
) -> dict[str, Any]:
    ctx = info.context
    kind = "project" if project else "user"
    need_superadmin(ctx, f"create_{kind}_resource_policy")

    def run() -> dict[str, Any]:
        create_user_policy(
            ctx.conn,
            name,
            project=project,
            max_vfolder_count=props.get("max_vfolder_count"),
            max_quota_scope_size=props.get("max_quota_scope_size"),
        )
        table = project_resource_policies if project else user_resource_policies
        return {"resource_policy": folder_policies(info, table, name)[0]}

    return _attempt(ctx, f"create_{kind}_resource_policy {name}", run)


def _rate_limit(props: Mapping[str, Any]) -> int | None:
    value = props.get("rate_limit")
    if value is not None and value < 0:
        raise InvalidAPIParameters(f"rate_limit: invalid value {value!r}; expected >= 0")
    return value if value is None else int(value)


def create_keypair_(info: Info, user_id: str, props: dict[str, Any]) -> dict[str, Any]:
    ctx = info.context
    need_admin(ctx, "create_keypair")
    policy = props.get("resource_policy")
    rate = props.get("rate_limit")
    opened = props.get("scaling_groups") or []
    if (policy not in (None, "default") or rate or opened) and not ctx.caller.is_superadmin:
        raise PermissionDenied(
            "create_keypair: only a superadmin sets resource_policy, rate_limit or scaling_groups"
        )

    def run() -> dict[str, Any]:
        user = resolve_user(ctx.conn, user_id)
        _check_domain(ctx, user["domain_name"], f"create_keypair for {user_id!r}")
        if user["role"] == "superadmin" and not ctx.caller.is_superadmin:
            raise PermissionDenied(f"create_keypair for {user_id!r}: a superadmin's keypair")
        if props.get("is_admin") and user["role"] == "user":
            raise InvalidAPIParameters(
                f"is_admin: user {user_id!r} has role 'user'; a keypair takes its user's role"
            )
        keys = create_keypair(
            ctx.conn,
            user["uuid"],
            resource_policy=policy or "default",
            rate_limit=_rate_limit(props) or 0,
            is_active=props.get("is_active") is not False,
            resource_groups_=opened,
        )
        row = (
            ctx.conn.execute(sa.select(keypairs).where(keypairs.c.access_key == keys.access_key))
            .mappings()
            .one()
        )
        return {"keypair": keypair_items(ctx.conn, [row], ctx.default_rate_limit)[0]}

    return _attempt(ctx, f"create_keypair for {user_id}", run)


def modify_keypair(info: Info, access_key: str, props: dict[str, Any]) -> dict[str, Any]:
    ctx = info.context
    need_admin(ctx, "modify_keypair")
    changes = {k: v for k, v in props.items() if v is not None}
    if (
        {"resource_policy", "rate_limit", "concurrency_limit"} & set(changes)
    ) and not ctx.caller.is_superadmin:
        raise PermissionDenied(
            f"modify_keypair {access_key}: only a superadmin changes resource_policy or rate_limit"
        )
    owner = keypair_owner(ctx.conn, access_key)
    if owner is None:
        raise NotFound(f"keypair {access_key!r} does not exist")
    _check_domain(ctx, owner.domain, f"modify_keypair {access_key}")
    if owner.role == "superadmin" and not ctx.caller.is_superadmin:
        raise PermissionDenied(f"modify_keypair {access_key}: a superadmin's keypair")

    def run() -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "is_active" in changes:
            values["is_active"] = bool(changes["is_active"])
        if "resource_policy" in changes:
            name = changes["resource_policy"]
            found = ctx.conn.execute(
                sa.select(keypair_resource_policies.c.name).where(
                    keypair_resource_policies.c.name == name
                )
            ).first()
            if found is None:
                raise NotFound(f"keypair resource policy {name!r} does not exist")
            values["resource_policy"] = name
        if "rate_limit" in changes:
            values["rate_limit"] = _rate_limit(changes)
        if "is_admin" in changes and bool(changes["is_admin"]) != (owner.role != "user"):
            raise InvalidAPIParameters(
                f"is_admin: keypair {access_key} takes its user's role ({owner.role}); "
                "change the user's role instead"
            )
        if values:
            ctx.conn.execute(
                keypairs.update().where(keypairs.c.access_key == access_key).values(**values)
            )
        return {}

    return _attempt(ctx, f"modify_keypair {access_key}", run)


def _policy_fields(props: Mapping[str, Any]) -> dict[str, Any]:
    unlimited = props.get("default_for_unspecified")
    if unlimited not in (None, "UNLIMITED"):
        raise InvalidAPIParameters(
            f"default_for_unspecified: invalid value {unlimited!r}; only 'UNLIMITED' is "
            "supported (a slot the policy does not name is not limited)"
        )
    fields: dict[str, Any] = {
        key: props[key]
        for key in (
            "max_session_lifetime",
            "max_concurrent_sessions",
            "max_pending_session_count",
            "max_containers_per_session",
            "idle_timeout",
        )
        if props.get(key) is not None
    }
    for key in ("total_resource_slots", "allowed_vfolder_hosts"):
        value = _json_field(props, key)
        if value is not None:
            fields[key] = value
    return fields


def create_keypair_resource_policy(info: Info, name: str, props: dict[str, Any]) -> dict[str, Any]:
    ctx = info.context
    need_superadmin(ctx, "create_keypair_resource_policy")

    def run() -> dict[str, Any]:
        create_keypair_policy(ctx.conn, name, _policy_fields(props))
        row = (
            ctx.conn.execute(
                sa.select(keypair_resource_policies).where(keypair_resource_policies.c.name == name)
            )
            .mappings()
            .one()
        )
        return {"resource_policy": policy_item(row)}

    return _attempt(ctx, f"create_keypair_resource_policy {name}", run)


def modify_keypair_resource_policy(info: Info, name: str, props: dict[str, Any]) -> dict[str, Any]:
    ctx = info.context
    need_superadmin(ctx, "modify_keypair_resource_policy")

    def run() -> dict[str, Any]:
        table = keypair_resource_policies
        old = ctx.conn.execute(sa.select(table).where(table.c.name == name)).mappings().first()
        if old is None:
            raise NotFound(f"keypair resource policy {name!r} does not exist")
        merged = {k: old[k] for k in _POLICY_COLUMNS} | _policy_fields(props)
        # Validate through the same path as a new policy, then write the checked values.
        ctx.conn.execute(table.delete().where(table.c.name == name))
        create_keypair_policy(ctx.conn, name, merged, now=old["created_at"])
        return {}

    return _attempt(ctx, f"modify_keypair_resource_policy {name}", run)


_POLICY_COLUMNS = (
    "total_resource_slots",
    "max_concurrent_sessions",
    "max_pending_session_count",
    "max_session_lifetime",
    "idle_timeout",
    "max_containers_per_session",
    "allowed_vfolder_hosts",
)

MUTATIONS: dict[str, Callable[..., Any]] = {
    "create_domain": create_domain_,
    "create_group": create_group_,
    "create_user_resource_policy": lambda info, name, props: _create_folder_policy(
        info, name, props, project=False
    ),
    "create_project_resource_policy": lambda info, name, props: _create_folder_policy(
        info, name, props, project=True
    ),
    "create_user": create_user_,
    "create_keypair": create_keypair_,
    "modify_keypair": modify_keypair,
    "create_keypair_resource_policy": create_keypair_resource_policy,
    "modify_keypair_resource_policy": modify_keypair_resource_policy,
}
