"""First-start state: the superadmin keypair, the default resource group, the credentials file."""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ..db.tables import keypairs, resource_groups

__all__ = ["Credentials", "ensure_bootstrap", "generate_keypair", "write_credentials"]

log = logging.getLogger(__name__)
_ALNUM = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, secret_key='********')"


def generate_keypair() -> Credentials:
    """Backend.AI-shaped keys: a 20-character access key starting AKIA, a 40-character secret."""
    access = "AKIA" + "".join(secrets.choice(_ALNUM) for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    return Credentials(access, secret)


def ensure_bootstrap(conn: sa.Connection, now: float | None = None) -> Credentials:
    """Create the default resource group and a superadmin keypair when missing; return the keypair."""
    now = time.time() if now is None else now
    if (
        conn.execute(
            sa.select(resource_groups.c.name).where(resource_groups.c.name == "default")
        ).first()
        is None
    ):
        conn.execute(
            resource_groups.insert().values(
                name="default", description="created at first start", created_at=now, options={}
            )
        )
    row = conn.execute(
        sa.select(keypairs.c.access_key, keypairs.c.secret_key)
        .where(keypairs.c.role == "superadmin", keypairs.c.is_active.is_(True))
        .order_by(keypairs.c.created_at)
        .limit(1)
    ).first()
    if row is not None:
        return Credentials(row[0], row[1])
    creds = generate_keypair()
    conn.execute(
        keypairs.insert().values(
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            user_id="admin@backend.ai",
            role="superadmin",
            is_active=True,
            created_at=now,
        )
    )
    log.info("created the bootstrap superadmin keypair %s", creds.access_key)
    return creds


def write_credentials(path: Path, endpoint: str, creds: Credentials) -> None:
    """Write endpoint and keypair to *path* with mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "endpoint": endpoint,
                "access_key": creds.access_key,
                "secret_key": creds.secret_key,
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
