"""Accounts on a real database (SQLite and PostgreSQL): bootstrap, users, keypairs, policies."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from backendai.db import open_database
from backendai.db.tables import (
    domains,
    keypair_resource_policies,
    keypairs,
    projects,
    resource_groups,
    sgroups_for_keypairs,
    sgroups_for_projects,
    user_projects,
    users,
)
from backendai.errors import Conflict, InvalidAPIParameters, NotFound
from backendai.manager.accounts import (
    create_domain,
    create_keypair,
    create_project,
    create_user,
    keypair_owner,
    reachable_resource_groups,
)
from backendai.manager.bootstrap import ensure_bootstrap, write_credentials
from backendai.manager.passwords import hash_password, verify_password
from backendai.manager.policies import create_keypair_policy
from tests import test_database

# The same fixture: an empty SQLite file, or a fresh PostgreSQL database.
db_url = test_database.db_url


def test_password_hash_verifies_only_the_password() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert hash_password("correct horse") != stored  # salted
    for bad in ("", "scrypt$x", "bcrypt$14$8$1$AA==$AA==", "scrypt$99$8$1$AA==$AA=="):
        assert not verify_password("correct horse", bad)


async def test_bootstrap_creates_the_defaults_and_the_superadmin_once(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with open_database(db_url) as db:
        creds = await db.run(ensure_bootstrap)
        again = await db.run(ensure_bootstrap)

        def look(c: sa.Connection) -> dict[str, object]:
            user = c.execute(sa.select(users).where(users.c.email == creds.email)).mappings().one()
            kp = c.execute(sa.select(keypairs)).mappings().all()
            return {
                "user": dict(user),
                "keypairs": [dict(k) for k in kp],
                "domains": c.execute(sa.select(domains.c.name)).scalars().all(),
                "projects": c.execute(sa.select(projects.c.name)).scalars().all(),
                "policies": c.execute(sa.select(keypair_resource_policies.c.name)).scalars().all(),
                "members": c.execute(sa.select(user_projects.c.user_uuid)).scalars().all(),
                "groups": reachable_resource_groups(c, creds.access_key),
            }

        got = await db.run(look)
    assert creds.password is not None
    assert again.password is None
    assert (again.access_key, again.secret_key) == (creds.access_key, creds.secret_key)
    user = got["user"]
    assert isinstance(user, dict)
    assert user["role"] == "superadmin"
    assert user["status"] == "active"
    assert verify_password(creds.password, user["password"])
    assert got["domains"] == ["default"]
    assert got["projects"] == ["default"]
    assert got["policies"] == ["default"]
    assert got["members"] == [user["uuid"]]
    assert got["groups"] == {"default"}
    kps = got["keypairs"]
    assert isinstance(kps, list)
    assert len(kps) == 1
    assert kps[0]["user"] == user["uuid"]
    assert kps[0]["resource_policy"] == "default"
    assert len(creds.access_key) == 20
    assert len(creds.secret_key) == 40
    text = caplog.text + repr(creds)
    assert creds.secret_key not in text
    assert creds.password not in text


async def test_bootstrap_links_a_superadmin_keypair_from_before_accounts(db_url: str) -> None:
    def legacy(c: sa.Connection) -> None:
        c.execute(
            keypairs.insert().values(
                access_key="AKIALEGACY0000000000",
                secret_key="s" * 40,
                user_id="admin@backend.ai",
                role="superadmin",
                is_active=True,
                created_at=1.0,
            )
        )

    async with open_database(db_url) as db:
        await db.run(legacy)
        creds = await db.run(ensure_bootstrap)
        owner = await db.run(lambda c: keypair_owner(c, "AKIALEGACY0000000000"))
    assert creds.access_key == "AKIALEGACY0000000000"
    assert owner is not None
    assert owner.user_uuid is not None
    assert (owner.role, owner.domain, owner.user_active) == ("superadmin", "default", True)


async def test_users_keypairs_and_resource_groups_through_domain_project_keypair(
    db_url: str,
) -> None:
    def setup(c: sa.Connection) -> dict[str, object]:
        ensure_bootstrap(c)
        for name in ("gpu", "cpu-only", "private"):
            c.execute(resource_groups.insert().values(name=name, created_at=0.0, options={}))
        create_domain(c, "lab", resource_groups_=["cpu-only"])
        pid = create_project(c, "lab", "vision", resource_groups_=["gpu"])
        uid = create_user(c, "ann@lab.example", "pass-word-1", domain="lab", project_ids=[pid])
        create_keypair_policy(
            c,
            "small",
            {"total_resource_slots": {"cpu": 2, "mem": "4g"}, "max_concurrent_sessions": 2},
        )
        k1 = create_keypair(c, "ann@lab.example", resource_policy="small")
        k2 = create_keypair(c, uid, resource_groups_=["private"])
        create_user(c, "bob@lab.example", "pass-word-2", domain="lab", status="inactive")
        k3 = create_keypair(c, "bob@lab.example")
        return {
            "k1": reachable_resource_groups(c, k1.access_key),
            "k2": reachable_resource_groups(c, k2.access_key),
            "k3": keypair_owner(c, k3.access_key),
            "n": c.execute(sa.select(sa.func.count()).where(keypairs.c.user == uid)).scalar(),
            "policy": c.execute(
                sa.select(keypair_resource_policies.c.total_resource_slots).where(
                    keypair_resource_policies.c.name == "small"
                )
            ).scalar(),
            "links": (
                c.execute(sa.select(sa.func.count()).select_from(sgroups_for_keypairs)).scalar(),
                c.execute(sa.select(sa.func.count()).select_from(sgroups_for_projects)).scalar(),
            ),
        }

    async with open_database(db_url) as db:
        got = await db.run(setup)
    assert got["k1"] == {"cpu-only", "gpu"}
    assert got["k2"] == {"cpu-only", "gpu", "private"}
    assert got["n"] == 2
    owner = got["k3"]
    assert owner is not None
    assert not owner.user_active
    assert owner.domain == "lab"
    assert got["policy"] == {"cpu": "2", "mem": "4294967296"}
    assert got["links"] == (1, 1)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: create_user(c, "not-an-email", "long-enough"), InvalidAPIParameters, "email"),
        (lambda c: create_user(c, "a@b.c", "short"), InvalidAPIParameters, "at least 8"),
        (
            lambda c: create_user(c, "a@b.c", "long-enough", role="root"),
            InvalidAPIParameters,
            "'root'",
        ),
        (lambda c: create_user(c, "a@b.c", "long-enough", domain="nowhere"), NotFound, "'nowhere'"),
        (lambda c: create_user(c, "admin@backend.ai", "long-enough"), Conflict, "already exists"),
        (lambda c: create_keypair(c, "ghost@x.y"), NotFound, "'ghost@x.y'"),
        (
            lambda c: create_keypair(c, "admin@backend.ai", resource_policy="huge"),
            NotFound,
            "'huge'",
        ),
        (lambda c: create_domain(c, "bad name"), InvalidAPIParameters, "'bad name'"),
        (lambda c: create_project(c, "default", "default"), Conflict, "already exists"),
        (
            lambda c: create_keypair_policy(c, "p", {"max_concurrent_sessions": -1}),
            InvalidAPIParameters,
            "max_concurrent_sessions",
        ),
        (
            lambda c: create_keypair_policy(c, "p", {"max_sessions": 1}),
            InvalidAPIParameters,
            "max_sessions",
        ),
    ],
)
async def test_bad_account_input_names_the_value(
    tmp_path: Path, call: object, error: type[Exception], message: str
) -> None:
    async with open_database(f"sqlite:///{tmp_path / 'm.db'}") as db:
        await db.run(ensure_bootstrap)
        with pytest.raises(error, match=message):
            await db.run(call)  # type: ignore[arg-type]


def test_credentials_file_keeps_the_password_across_starts(tmp_path: Path) -> None:
    from backendai.manager.bootstrap import Credentials

    path = tmp_path / "credentials.json"
    write_credentials(path, "http://x", Credentials("AK", "SK", "admin@backend.ai", "pw-1234567"))
    write_credentials(path, "http://y", Credentials("AK", "SK", "admin@backend.ai", None))
    data = json.loads(path.read_text())
    assert (data["endpoint"], data["password"], data["email"]) == (
        "http://y",
        "pw-1234567",
        "admin@backend.ai",
    )
    assert path.stat().st_mode & 0o777 == 0o600
