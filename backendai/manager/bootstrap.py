"""First-start state: default domain, project, policies and resource group; the superadmin.

``ensure_bootstrap`` is idempotent: each missing piece is created, nothing
present is changed.  A superadmin keypair made before accounts existed (no
user) is linked to the superadmin user.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ..db.tables import (
    domains,
    keypair_resource_policies,
    keypairs,
    project_resource_policies,
    projects,
    resource_groups,
    sgroups_for_domains,
    user_resource_policies,
    users,
)
from .accounts import (
    create_domain,
    create_keypair,
    create_project,
    create_user,
)
from .policies import create_keypair_policy, create_user_policy

__all__ = ["SUPERADMIN_EMAIL", "Credentials", "ensure_bootstrap", "write_credentials"]

log = logging.getLogger(__name__)
SUPERADMIN_EMAIL = "admin@backend.ai"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    email: str = SUPERADMIN_EMAIL
    # Known only when this start created the superadmin user.
    password: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, secret_key='********')"


def _missing(conn: sa.Connection, column: sa.Column[str], value: str) -> bool:
    return conn.execute(sa.select(column).where(column == value)).first() is None


def _ensure_defaults(conn: sa.Connection, now: float) -> None:
    if _missing(conn, resource_groups.c.name, "default"):
        conn.execute(
            resource_groups.insert().values(
                name="default", description="created at first start", created_at=now, options={}
            )
        )
    if _missing(conn, keypair_resource_policies.c.name, "default"):
        create_keypair_policy(conn, "default", {}, now=now)
    if _missing(conn, user_resource_policies.c.name, "default"):
        create_user_policy(conn, "default", now=now)
    if _missing(conn, project_resource_policies.c.name, "default"):
        create_user_policy(conn, "default", project=True, now=now)
    if _missing(conn, domains.c.name, "default"):
        create_domain(conn, "default", description="created at first start", now=now)
        conn.execute(sgroups_for_domains.insert().values(scaling_group="default", domain="default"))
    if (
        conn.execute(
            sa.select(projects.c.id).where(
                projects.c.domain_name == "default", projects.c.name == "default"
            )
        ).first()
        is None
    ):
        create_project(conn, "default", "default", description="created at first start", now=now)


def _ensure_superadmin(conn: sa.Connection, now: float) -> Credentials:
    password: str | None = None
    user = conn.execute(sa.select(users.c.uuid).where(users.c.email == SUPERADMIN_EMAIL)).first()
    if user is None:
        password = secrets.token_urlsafe(18)
        project_id = conn.execute(
            sa.select(projects.c.id).where(
                projects.c.domain_name == "default", projects.c.name == "default"
            )
        ).scalar_one()
        uid = create_user(
            conn,
            SUPERADMIN_EMAIL,
            password,
            username="admin",
            full_name="superadmin (created at first start)",
            role="superadmin",
            project_ids=[project_id],
            now=now,
        )
        log.info("created the superadmin user %s", SUPERADMIN_EMAIL)
    else:
        uid = user[0]
    # Keypairs from before accounts existed: the superadmin's become the user's.
    conn.execute(
        keypairs.update()
        .where(keypairs.c.user.is_(None), keypairs.c.user_id == SUPERADMIN_EMAIL)
        .values(user=uid, resource_policy="default")
    )
    row = conn.execute(
        sa.select(keypairs.c.access_key, keypairs.c.secret_key)
        .where(keypairs.c.user == uid, keypairs.c.is_active.is_(True))
        .order_by(keypairs.c.created_at)
        .limit(1)
    ).first()
    if row is not None:
        return Credentials(row[0], row[1], SUPERADMIN_EMAIL, password)
    keys = create_keypair(conn, uid, now=now)
    log.info("created the bootstrap superadmin keypair %s", keys.access_key)
    return Credentials(keys.access_key, keys.secret_key, SUPERADMIN_EMAIL, password)


def ensure_bootstrap(conn: sa.Connection, now: float | None = None) -> Credentials:
    """Create what a first start needs; return the superadmin's keypair."""
    now = time.time() if now is None else now
    _ensure_defaults(conn, now)
    return _ensure_superadmin(conn, now)


def write_credentials(path: Path, endpoint: str, creds: Credentials) -> None:
    """Write endpoint, keypair and login to *path* with mode 0600, atomically.

    The superadmin password is known only at the start that created it; later
    starts keep the one already in the file.
    """
    password = creds.password
    if password is None:
        try:
            old = json.loads(path.read_text())
            if old.get("email") == creds.email and isinstance(old.get("password"), str):
                password = old["password"]
        except (OSError, ValueError):
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "endpoint": endpoint,
                "access_key": creds.access_key,
                "secret_key": creds.secret_key,
                "email": creds.email,
                "password": password,
                "env": {
                    "BACKEND_ENDPOINT": endpoint,
                    "BACKEND_ACCESS_KEY": creds.access_key,
                    "BACKEND_SECRET_KEY": creds.secret_key,
                    "BACKEND_ENDPOINT_TYPE": "api",
                },
            },
            f,
            indent=2,
        )
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
