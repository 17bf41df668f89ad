"""Units of work on accounts: domains, projects, users, keypairs and resource policies.

Sync functions over one Connection (run them through ``Database.run``), so a
caller composes several into one transaction.  Every bad value raises an
:class:`~backendai.errors.APIError` naming the value and what was expected;
nothing is written then.  Secret keys and passwords never reach a log.
"""

from __future__ import annotations

import re
import secrets
import string
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..db.tables import (
    domains,
    keypair_resource_policies,
    keypairs,
    project_resource_policies,
    projects,
    resource_groups,
    sgroups_for_domains,
    sgroups_for_keypairs,
    sgroups_for_projects,
    user_projects,
    user_resource_policies,
    users,
)
from ..errors import Conflict, InvalidAPIParameters, NotFound
from .passwords import hash_password

__all__ = [
    "ROLES",
    "USER_STATUSES",
    "KeypairOwner",
    "NewKeypair",
    "check_name",
    "create_domain",
    "create_keypair",
    "create_project",
    "create_user",
    "fresh",
    "generate_keys",
    "keypair_owner",
    "reachable_resource_groups",
    "resolve_user",
]

ROLES = ("superadmin", "admin", "user")
USER_STATUSES = ("active", "inactive")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,128}@[^@\s]{1,127}$")
_ALNUM = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class NewKeypair:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return f"NewKeypair(access_key={self.access_key!r}, secret_key='********')"


def generate_keys() -> NewKeypair:
    """Backend.AI-shaped keys: a 20-character access key starting AKIA, a 40-character secret."""
    access = "AKIA" + "".join(secrets.choice(_ALNUM) for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    return NewKeypair(access, secret)


def check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidAPIParameters(
            f"{what}: invalid value {value!r}; expected 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _exists(conn: sa.Connection, column: sa.Column[Any], value: Any) -> bool:
    return conn.execute(sa.select(column).where(column == value)).first() is not None


def _need(conn: sa.Connection, column: sa.Column[Any], value: Any, what: str) -> None:
    if not _exists(conn, column, value):
        raise NotFound(f"{what} {value!r} does not exist")


def fresh(conn: sa.Connection, column: sa.Column[Any], value: Any, what: str) -> None:
    if _exists(conn, column, value):
        raise Conflict(f"{what} {value!r} already exists")


def create_domain(
    conn: sa.Connection,
    name: str,
    *,
    description: str = "",
    resource_groups_: Iterable[str] = (),
    now: float | None = None,
) -> None:
    check_name("domain name", name)
    fresh(conn, domains.c.name, name, "domain")
    conn.execute(
        domains.insert().values(
            name=name,
            description=description,
            is_active=True,
            total_resource_slots={},
            allowed_vfolder_hosts={},
            created_at=time.time() if now is None else now,
        )
    )
    for group in resource_groups_:
        _need(conn, resource_groups.c.name, group, "resource group")
        conn.execute(sgroups_for_domains.insert().values(scaling_group=group, domain=name))


def create_project(
    conn: sa.Connection,
    domain: str,
    name: str,
    *,
    description: str = "",
    resource_policy: str = "default",
    resource_groups_: Iterable[str] = (),
    now: float | None = None,
) -> str:
    """Create project *name* in *domain*; return its id."""
    check_name("project name", name)
    _need(conn, domains.c.name, domain, "domain")
    _need(conn, project_resource_policies.c.name, resource_policy, "project resource policy")
    if (
        conn.execute(
            sa.select(projects.c.id).where(
                projects.c.domain_name == domain, projects.c.name == name
            )
        ).first()
        is not None
    ):
        raise Conflict(f"project {name!r} already exists in domain {domain!r}")
    project_id = str(uuid.uuid4())
    conn.execute(
        projects.insert().values(
            id=project_id,
            name=name,
            domain_name=domain,
            description=description,
            is_active=True,
            total_resource_slots={},
            resource_policy=resource_policy,
            created_at=time.time() if now is None else now,
        )
    )
    for group in resource_groups_:
        _need(conn, resource_groups.c.name, group, "resource group")
        conn.execute(
            sgroups_for_projects.insert().values(scaling_group=group, project_id=project_id)
        )
    return project_id


def create_user(
    conn: sa.Connection,
    email: str,
    password: str,
    *,
    username: str | None = None,
    full_name: str = "",
    role: str = "user",
    status: str = "active",
    domain: str = "default",
    resource_policy: str = "default",
    project_ids: Iterable[str] = (),
    need_password_change: bool = False,
    now: float | None = None,
) -> str:
    """Create a user; return its uuid.  The password is stored hashed (scrypt)."""
    if not isinstance(email, str) or not _EMAIL_RE.match(email):
        raise InvalidAPIParameters(f"email: invalid value {email!r}; expected user@host")
    username = email if username is None else username
    if not isinstance(username, str) or not 1 <= len(username) <= 64:
        raise InvalidAPIParameters(
            f"username: invalid value {username!r}; expected 1-64 characters"
        )
    if not isinstance(password, str) or len(password) < 8:
        raise InvalidAPIParameters("password: too short; expected at least 8 characters")
    if role not in ROLES:
        raise InvalidAPIParameters(f"role: invalid value {role!r}; expected one of {ROLES}")
    if status not in USER_STATUSES:
        raise InvalidAPIParameters(
            f"status: invalid value {status!r}; expected one of {USER_STATUSES}"
        )
    _need(conn, domains.c.name, domain, "domain")
    _need(conn, user_resource_policies.c.name, resource_policy, "user resource policy")
    fresh(conn, users.c.email, email, "user with email")
    fresh(conn, users.c.username, username, "user with username")
    user_uuid = str(uuid.uuid4())
    conn.execute(
        users.insert().values(
            uuid=user_uuid,
            email=email,
            username=username,
            password=hash_password(password),
            need_password_change=need_password_change,
            full_name=full_name,
            description="",
            role=role,
            status=status,
            domain_name=domain,
            resource_policy=resource_policy,
            created_at=time.time() if now is None else now,
        )
    )
    project_ids = list(project_ids)
    if not project_ids:  # a new user joins their domain's "default" project, if it has one
        project_ids = list(
            conn.execute(
                sa.select(projects.c.id).where(
                    projects.c.domain_name == domain, projects.c.name == "default"
                )
            ).scalars()
        )
    for project_id in project_ids:
        row = conn.execute(
            sa.select(projects.c.domain_name).where(projects.c.id == project_id)
        ).first()
        if row is None:
            raise NotFound(f"project {project_id!r} does not exist")
        if row[0] != domain:
            raise InvalidAPIParameters(
                f"project {project_id!r} is in domain {row[0]!r}; user {email!r} is in {domain!r}"
            )
        conn.execute(user_projects.insert().values(user_uuid=user_uuid, project_id=project_id))
    return user_uuid


def resolve_user(conn: sa.Connection, ref: str) -> sa.RowMapping:
    """A user by uuid, email or username."""
    row = (
        conn.execute(
            sa.select(users).where(
                sa.or_(users.c.uuid == ref, users.c.email == ref, users.c.username == ref)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"user {ref!r} does not exist (looked up by uuid, email and username)")
    return row


def create_keypair(
    conn: sa.Connection,
    user_ref: str,
    *,
    resource_policy: str = "default",
    rate_limit: int = 0,
    is_active: bool = True,
    resource_groups_: Iterable[str] = (),
    now: float | None = None,
) -> NewKeypair:
    """A new keypair for the user *user_ref* (uuid, email or username)."""
    user = resolve_user(conn, user_ref)
    _need(conn, keypair_resource_policies.c.name, resource_policy, "keypair resource policy")
    if not isinstance(rate_limit, int) or isinstance(rate_limit, bool) or rate_limit < 0:
        raise InvalidAPIParameters(
            f"rate_limit: invalid value {rate_limit!r}; expected an integer >= 0 (0: unlimited)"
        )
    keys = generate_keys()
    conn.execute(
        keypairs.insert().values(
            access_key=keys.access_key,
            secret_key=keys.secret_key,
            user_id=user["email"],
            role=user["role"],
            is_active=is_active,
            created_at=time.time() if now is None else now,
            user=user["uuid"],
            resource_policy=resource_policy,
            rate_limit=rate_limit,
        )
    )
    for group in resource_groups_:
        _need(conn, resource_groups.c.name, group, "resource group")
        conn.execute(
            sgroups_for_keypairs.insert().values(scaling_group=group, access_key=keys.access_key)
        )
    return keys


@dataclass(frozen=True)
class KeypairOwner:
    """Who a keypair acts for: the effective role, the domain, whether the user is active."""

    access_key: str
    role: str
    domain: str
    user_uuid: str | None
    email: str
    user_active: bool
    resource_policy: str | None


def keypair_owner(conn: sa.Connection, access_key: str) -> KeypairOwner | None:
    """The keypair's owner; a keypair without a user acts alone in the default domain."""
    row = conn.execute(
        sa.select(
            keypairs.c.role,
            keypairs.c.user_id,
            keypairs.c.user,
            keypairs.c.resource_policy,
            users.c.role.label("user_role"),
            users.c.status,
            users.c.domain_name,
        )
        .select_from(keypairs.outerjoin(users, users.c.uuid == keypairs.c.user))
        .where(keypairs.c.access_key == access_key)
    ).first()
    if row is None:
        return None
    if row.user is None:
        return KeypairOwner(
            access_key, row.role, "default", None, row.user_id, True, row.resource_policy
        )
    return KeypairOwner(
        access_key,
        row.user_role,
        row.domain_name,
        row.user,
        row.user_id,
        row.status == "active",
        row.resource_policy,
    )


def reachable_resource_groups(conn: sa.Connection, access_key: str) -> set[str]:
    """Resource groups the keypair may use: through its domain, its projects, or itself."""
    owner = keypair_owner(conn, access_key)
    if owner is None:
        return set()
    names = set(
        conn.execute(
            sa.select(sgroups_for_keypairs.c.scaling_group).where(
                sgroups_for_keypairs.c.access_key == access_key
            )
        ).scalars()
    )
    names |= set(
        conn.execute(
            sa.select(sgroups_for_domains.c.scaling_group).where(
                sgroups_for_domains.c.domain == owner.domain
            )
        ).scalars()
    )
    if owner.user_uuid is not None:
        names |= set(
            conn.execute(
                sa.select(sgroups_for_projects.c.scaling_group)
                .join(
                    user_projects, user_projects.c.project_id == sgroups_for_projects.c.project_id
                )
                .where(user_projects.c.user_uuid == owner.user_uuid)
            ).scalars()
        )
    return names
