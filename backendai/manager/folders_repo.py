"""Virtual folders in the database: rows, who may see them, and with which permission.

Permissions rank ``ro`` < ``rw`` < ``wd`` (rw plus deleting the folder); an
owner holds every right.  A user sees their own folders, folders shared with
them (``vfolder_permissions``), and the folders of their projects.

A folder's owner is a user id (``keypairs.user_id``: the user's email); a
project folder names its project (by name, within the owner's domain).  The
few functions under "accounts" are the one place that maps a caller to a user
and decides project membership.
Every function here is synchronous and runs inside ``Database.run``.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..db.tables import (
    keypairs,
    project_resource_policies,
    projects,
    user_projects,
    user_resource_policies,
    users,
    vfolder_invitations,
    vfolder_permissions,
    vfolders,
)
from ..errors import (
    Conflict,
    InvalidAPIParameters,
    PermissionDenied,
    QuotaExceeded,
    VFolderNotFound,
)
from .api import Caller

__all__ = [
    "PERMISSIONS",
    "Access",
    "Folder",
    "caller_user_id",
    "check_permission",
    "insert_folder",
    "list_access",
    "resolve_folder",
    "user_exists",
]

PERMISSIONS = ("ro", "rw", "wd")
_RANK = {"ro": 1, "rw": 2, "wd": 3}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Folder:
    id: str
    name: str
    host: str
    ownership_type: str
    user_id: str | None
    project: str | None
    usage_mode: str
    permission: str
    cloneable: bool
    quota_bytes: int | None
    status: str
    created_at: float


@dataclass(frozen=True)
class Access:
    folder: Folder
    permission: str  # effective: ro | rw | wd
    is_owner: bool


# -- accounts: the one place that knows how callers map to users and projects --


def caller_user_id(c: sa.Connection, caller: Caller) -> str:
    """The user id of the keypair the caller acts as (``owner_access_key`` included)."""
    row = c.execute(
        sa.select(keypairs.c.user_id).where(keypairs.c.access_key == caller.owner_access_key)
    ).first()
    if row is None:
        raise InvalidAPIParameters(f"owner_access_key {caller.owner_access_key!r} is unknown")
    return str(row[0])


def _project(c: sa.Connection, project: str, user_id: str) -> tuple[str, str] | None:
    """(project id, its domain) for *project* (an id, or a name in the user's domain)."""
    domain = c.execute(
        sa.select(users.c.domain_name).where(users.c.email == user_id)
    ).scalar_one_or_none()
    by_id = projects.c.id == project
    by_name = sa.and_(projects.c.name == project, projects.c.domain_name == domain)
    row = c.execute(
        sa.select(projects.c.id, projects.c.domain_name).where(sa.or_(by_id, by_name))
    ).first()
    return None if row is None else (str(row.id), str(row.domain_name))


def is_project_member(c: sa.Connection, project: str, user_id: str, role: str) -> bool:
    """Whether the user belongs to *project*; a superadmin, or an admin of its domain, counts."""
    found = _project(c, project, user_id)
    if role == "superadmin":
        return True
    if found is None:
        return False
    project_id, domain = found
    user = c.execute(
        sa.select(users.c.uuid, users.c.domain_name).where(users.c.email == user_id)
    ).first()
    if user is None:
        return False
    if role == "admin" and user.domain_name == domain:
        return True
    member = sa.select(user_projects.c.user_uuid).where(
        user_projects.c.user_uuid == user.uuid, user_projects.c.project_id == project_id
    )
    return c.execute(member).first() is not None


def administers_project(c: sa.Connection, project: str, user_id: str, role: str) -> bool:
    """A superadmin, or an admin of the project's domain, creates and manages its folders."""
    if role == "superadmin":
        return _project(c, project, user_id) is not None
    return role == "admin" and is_project_member(c, project, user_id, role)


def user_exists(c: sa.Connection, user_id: str) -> bool:
    return (
        c.execute(sa.select(keypairs.c.user_id).where(keypairs.c.user_id == user_id)).first()
        is not None
    )


# -- folders --


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidAPIParameters(
            f"folder name {name!r} is invalid; expected 1-64 letters, digits, '.', '_' or '-', "
            "not starting with '.'"
        )
    return name


def check_permission(value: Any, where: str = "permission") -> str:
    if value not in PERMISSIONS:
        raise InvalidAPIParameters(f"{where}: {value!r} is invalid; expected one of ro, rw, wd")
    return str(value)


def _folder(row: Any) -> Folder:
    m = row._mapping
    return Folder(**{k: m[k] for k in Folder.__dataclass_fields__})


def _visible(c: sa.Connection, user_id: str, role: str) -> list[Access]:
    out: dict[str, Access] = {}
    for row in c.execute(sa.select(vfolders).where(vfolders.c.user_id == user_id)):
        f = _folder(row)
        out[f.id] = Access(f, "wd", True)
    shared = sa.select(vfolders, vfolder_permissions.c.permission.label("granted")).join(
        vfolder_permissions, vfolder_permissions.c.vfolder_id == vfolders.c.id
    )
    for row in c.execute(shared.where(vfolder_permissions.c.user_id == user_id)):
        f = _folder(row)
        out.setdefault(f.id, Access(f, row.granted, False))
    for row in c.execute(sa.select(vfolders).where(vfolders.c.ownership_type == "group")):
        f = _folder(row)
        if f.id not in out and is_project_member(c, f.project or "", user_id, role):
            admin = role in ("superadmin", "admin")
            out[f.id] = Access(f, "wd" if admin else f.permission, admin)
    return sorted(out.values(), key=lambda a: (not a.is_owner, a.folder.name, a.folder.created_at))


def list_access(
    c: sa.Connection, user_id: str, role: str, *, everything: bool = False
) -> list[Access]:
    """Folders the user sees; with *everything* (superadmins), every folder."""
    if everything and role == "superadmin":
        mine = {a.folder.id: a for a in _visible(c, user_id, role)}
        rows = c.execute(sa.select(vfolders).order_by(vfolders.c.name))
        return [mine.get(r.id) or Access(_folder(r), "wd", False) for r in rows]
    return _visible(c, user_id, role)


def resolve_folder(c: sa.Connection, user_id: str, role: str, ref: str) -> Access:
    """The folder *ref* (name or id) as the user sees it; their own one first."""
    for a in _visible(c, user_id, role):
        if ref in (a.folder.name, a.folder.id):
            return a
    if role == "superadmin":
        row = c.execute(
            sa.select(vfolders).where(sa.or_(vfolders.c.id == ref, vfolders.c.name == ref))
        ).first()
        if row is not None:
            return Access(_folder(row), "wd", False)
    raise VFolderNotFound(f"no virtual folder {ref!r} visible to {user_id}")


def require(access: Access, needed: str, what: str) -> None:
    if _RANK[access.permission] < _RANK[needed]:
        raise PermissionDenied(
            f"folder {access.folder.name!r}: {what} needs permission {needed!r}; "
            f"you have {access.permission!r}"
        )


def require_owner(access: Access, role: str, what: str) -> None:
    if not access.is_owner and role != "superadmin":
        raise PermissionDenied(f"folder {access.folder.name!r}: only its owner may {what}")


def insert_folder(
    c: sa.Connection,
    *,
    name: str,
    host: str,
    user_id: str,
    project: str | None,
    usage_mode: str,
    permission: str,
    cloneable: bool,
    quota_bytes: int | None,
) -> Folder:
    """A new folder row; Conflict when the owner (user or project) already has the name.

    The owner's folder policy (user or project resource policy) holds: at most
    ``max_vfolder_count`` folders, and quotas summing to at most
    ``max_quota_scope_size``; under such a limit a folder without a quota of its
    own gets what is left of the scope.  Checked in the inserting transaction.
    """
    owner = vfolders.c.project == project if project else vfolders.c.user_id == user_id
    whose = f"project {project!r}" if project else f"user {user_id!r}"
    clash = c.execute(sa.select(vfolders.c.id).where(owner, vfolders.c.name == name)).first()
    if clash is not None:
        raise Conflict(f"a virtual folder named {name!r} already exists for {whose}")
    quota_bytes = _within_policy(c, owner, whose, _folder_policy(c, user_id, project), quota_bytes)
    values = {
        "id": str(uuid.uuid4()),
        "name": name,
        "host": host,
        "ownership_type": "group" if project else "user",
        "user_id": None if project else user_id,
        "project": project,
        "usage_mode": usage_mode,
        "permission": permission,
        "cloneable": cloneable,
        "quota_bytes": quota_bytes,
        "status": "ready",
        "created_at": time.time(),
    }
    c.execute(vfolders.insert().values(**values))
    return Folder(**values)  # type: ignore[arg-type]


def _folder_policy(c: sa.Connection, user_id: str, project: str | None) -> Any:
    """The folder limits that apply to the new folder's owner (None: no policy row)."""
    if project:
        found = _project(c, project, user_id)
        if found is None:
            return None
        q = sa.select(project_resource_policies).join(
            projects, projects.c.resource_policy == project_resource_policies.c.name
        )
        return c.execute(q.where(projects.c.id == found[0])).first()
    q = sa.select(user_resource_policies).join(
        users, users.c.resource_policy == user_resource_policies.c.name
    )
    return c.execute(q.where(users.c.email == user_id)).first()


def _within_policy(
    c: sa.Connection, owner: Any, whose: str, policy: Any, quota_bytes: int | None
) -> int | None:
    if policy is None:
        return quota_bytes
    limit = policy.max_vfolder_count
    if limit is not None and limit > 0:
        count = c.execute(sa.select(sa.func.count()).select_from(vfolders).where(owner)).scalar()
        if int(count or 0) >= limit:
            raise InvalidAPIParameters(
                f"{whose} already has {count} virtual folders; its resource policy "
                f"{policy.name!r} allows {limit} (max_vfolder_count)"
            )
    scope = policy.max_quota_scope_size
    if scope is None or scope <= 0:
        return quota_bytes
    used = c.execute(
        sa.select(sa.func.coalesce(sa.func.sum(vfolders.c.quota_bytes), 0)).where(owner)
    ).scalar()
    left = scope - int(used or 0)
    wanted = left if quota_bytes is None else quota_bytes
    if wanted <= 0 or wanted > left:
        raise QuotaExceeded(
            f"a quota of {wanted} bytes for a new folder of {whose} exceeds what its resource "
            f"policy {policy.name!r} leaves: {max(left, 0)} of {scope} bytes "
            "(max_quota_scope_size)"
        )
    return wanted


def delete_folder_rows(c: sa.Connection, folder_id: str) -> None:
    c.execute(vfolder_invitations.delete().where(vfolder_invitations.c.vfolder_id == folder_id))
    c.execute(vfolder_permissions.delete().where(vfolder_permissions.c.vfolder_id == folder_id))
    c.execute(vfolders.delete().where(vfolders.c.id == folder_id))


def grant(c: sa.Connection, folder_id: str, user_id: str, permission: str) -> None:
    c.execute(
        vfolder_permissions.delete().where(
            vfolder_permissions.c.vfolder_id == folder_id,
            vfolder_permissions.c.user_id == user_id,
        )
    )
    c.execute(
        vfolder_permissions.insert().values(
            vfolder_id=folder_id, user_id=user_id, permission=permission
        )
    )


def rename_folder(c: sa.Connection, folder: Folder, new_name: str) -> None:
    owner = (
        vfolders.c.project == folder.project
        if folder.project
        else vfolders.c.user_id == folder.user_id
    )
    clash = c.execute(
        sa.select(vfolders.c.id).where(
            owner, vfolders.c.name == new_name, vfolders.c.id != folder.id
        )
    ).first()
    if clash is not None:
        raise Conflict(f"a virtual folder named {new_name!r} already exists beside {folder.name!r}")
    c.execute(vfolders.update().where(vfolders.c.id == folder.id).values(name=new_name))


def revoke(c: sa.Connection, folder_id: str, user_ids: list[str]) -> None:
    c.execute(
        vfolder_permissions.delete().where(
            vfolder_permissions.c.vfolder_id == folder_id,
            vfolder_permissions.c.user_id.in_(user_ids),
        )
    )
