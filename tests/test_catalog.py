"""The image catalog's units of work on a real (SQLite) database: name resolution, scans,
agent reports that do not clobber a registry's rows, and the 0002 migration both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from alembic import command

from backendai.config import Secret
from backendai.db import Database, current_revision, open_database, upgrade
from backendai.db.migrate import _alembic_config
from backendai.db.tables import agents, images, registries, resource_groups
from backendai.errors import Conflict, InvalidAPIParameters, UnknownImage
from backendai.manager import catalog
from backendai.registry import ImageRecord, RegistrySpec, ScanResult

LAB = RegistrySpec("lab", "http://127.0.0.1:5000", "docker", "", "u", Secret("pw"))


def _row(name: str, arch: str = "x86_64", registry: str = "") -> dict[str, object]:
    return {
        "name": name,
        "architecture": arch,
        "digest": "sha256:" + name[-1] * 8,
        "size_bytes": 1,
        "labels": {"ai.backend.kernelspec": "1"},
        "last_seen": 1.0,
        "registry": registry,
        "tag": name.rpartition(":")[2],
    }


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(f"sqlite:///{tmp_path / 'm.db'}") as db:

        def seed(conn: sa.Connection) -> None:
            conn.execute(
                resource_groups.insert().values(name="default", created_at=1.0, options={})
            )
            catalog.add_registry(conn, LAB, 1.0)
            conn.execute(
                images.insert(),
                [
                    _row("backendai/python:3.11"),
                    _row("127.0.0.1:5000/backendai/python:3.11", registry="lab"),
                    _row("127.0.0.1:5000/team/python:3.11", registry="lab"),
                    _row("127.0.0.1:5000/team/arm:1", "aarch64", registry="lab"),
                ],
            )

        await db.run(seed)
        yield db


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("backendai/python:3.11", "backendai/python:3.11"),  # exact
        ("127.0.0.1:5000/team/python:3.11", "127.0.0.1:5000/team/python:3.11"),
        ("team/python:3.11", "127.0.0.1:5000/team/python:3.11"),  # without the host
        ("arm:1", "127.0.0.1:5000/team/arm:1"),
    ],
)
async def test_resolve_name(db: Database, ref: str, expected: str) -> None:
    assert await db.run(lambda c: catalog.resolve_name(c, ref)) == expected


async def test_resolve_name_refuses_unknown_and_ambiguous(db: Database) -> None:
    with pytest.raises(UnknownImage, match="unknown image 'nope:1'; known images: "):
        await db.run(lambda c: catalog.resolve_name(c, "nope:1"))
    await db.run(
        lambda c: c.execute(
            images.insert().values(**_row("registry.example:5000/team/python:3.11"))
        )
    )
    with pytest.raises(
        InvalidAPIParameters, match=r"'team/python:3\.11' is ambiguous: it may mean"
    ):
        await db.run(lambda c: catalog.resolve_name(c, "team/python:3.11"))
    # The closest name wins over copies in registries: no ambiguity here.
    assert await db.run(lambda c: catalog.resolve_name(c, "python:3.11")) == "backendai/python:3.11"
    await db.run(lambda c: catalog.set_alias(c, "py", "127.0.0.1:5000/team/python:3.11", 2.0))
    assert (
        await db.run(lambda c: catalog.resolve_name(c, "py")) == "127.0.0.1:5000/team/python:3.11"
    )
    with pytest.raises(Conflict, match="is the name of an image"):
        await db.run(lambda c: catalog.set_alias(c, "backendai/python:3.11", "py", 2.0))


async def test_resolve_image_picks_the_groups_architecture(db: Database) -> None:
    def add_agent(conn: sa.Connection) -> None:
        conn.execute(
            agents.insert().values(
                id="a1", status="ALIVE", status_changed=1.0, rpc_addr="x", resource_group="default",
                architecture="x86_64", backend="dummy", capacity={}, images=[], hardware={},
                version="0", first_contact=1.0, last_heartbeat=1.0,
            )
        )  # fmt: skip

    await db.run(add_agent)
    name, arch, labels = await db.run(
        lambda c: catalog.resolve_image(c, "team/python:3.11", None, "default")
    )
    assert (name, arch, labels["ai.backend.kernelspec"]) == (
        "127.0.0.1:5000/team/python:3.11",
        "x86_64",
        "1",
    )
    with pytest.raises(
        UnknownImage,
        match="built only for aarch64; the agents of resource group 'default' are x86_64",
    ):
        await db.run(lambda c: catalog.resolve_image(c, "arm:1", None, "default"))
    with pytest.raises(UnknownImage, match="has no x86_64 build; it is built for aarch64"):
        await db.run(lambda c: catalog.resolve_image(c, "arm:1", "amd64", "default"))
    assert (await db.run(lambda c: catalog.resolve_image(c, "arm:1", "arm64", "default")))[
        1
    ] == "aarch64"


async def test_agent_reports_keep_a_registrys_digest(db: Database) -> None:
    reported = [
        {"name": "127.0.0.1:5000/team/python:3.11", "architecture": "x86_64", "digest": "sha256:local-id",
         "size_bytes": 9, "labels": {}},
        {"name": "mine/new:1", "architecture": "x86_64", "digest": "sha256:new", "size_bytes": 9, "labels": {}},
    ]  # fmt: skip
    await db.run(lambda c: catalog.note_agent_images(c, reported, 5.0))
    rows = await db.run(lambda c: {r.name: r for r in c.execute(sa.select(images))})
    assert rows["127.0.0.1:5000/team/python:3.11"].digest == "sha256:11111111"  # the registry's
    assert rows["127.0.0.1:5000/team/python:3.11"].last_seen == 5.0
    assert (rows["mine/new:1"].registry, rows["mine/new:1"].tag) == ("", "1")
    pullable = await db.run(catalog.pullable_images)
    assert ("127.0.0.1:5000/team/arm:1", "aarch64") in pullable
    assert ("mine/new:1", "x86_64") not in pullable
    source = await db.run(lambda c: catalog.pull_source(c, "127.0.0.1:5000/team/python:3.11"))
    assert source == LAB
    assert await db.run(lambda c: catalog.pull_source(c, "mine/new:1")) is None


async def test_apply_scan_upserts_and_drops(db: Database) -> None:
    result = ScanResult(
        "lab",
        [
            ImageRecord("team/python", "3.11", "sha256:changed", "x86_64"),
            ImageRecord("team/python", "3.12", "sha256:new", "x86_64"),
        ],
        ["team/plain:1 (x86_64): not a kernel image"],
    )
    await db.run(lambda c: catalog.set_alias(c, "a", "arm:1", 1.0))
    summary = await db.run(lambda c: catalog.apply_scan(c, LAB, result, 9.0))
    assert summary == {
        "registry": "lab",
        "images": 2,
        "added": 1,
        "updated": 1,
        "removed": 2,  # backendai/python:3.11 and team/arm:1 are no longer there
        "skipped": ["team/plain:1 (x86_64): not a kernel image"],
    }
    listed = await db.run(lambda c: catalog.list_images(c, registry="lab"))
    assert [(i["name"], i["digest"]) for i in listed] == [
        ("127.0.0.1:5000/team/python:3.11", "sha256:changed"),
        ("127.0.0.1:5000/team/python:3.12", "sha256:new"),
    ]
    assert await db.run(lambda c: c.execute(sa.select(registries.c.last_scanned)).scalar()) == 9.0
    with pytest.raises(UnknownImage):  # its alias went with the image
        await db.run(lambda c: catalog.resolve_name(c, "a"))


async def test_migration_0002_down_and_up_keeps_images(db: Database) -> None:
    def downgrade(conn: sa.Connection) -> None:
        cfg = _alembic_config(conn)
        command.downgrade(cfg, "0001")

    await trio.to_thread.run_sync(lambda: db.run_sync(downgrade))
    assert await trio.to_thread.run_sync(current_revision, db) == "0001"
    names = await db.run(lambda c: set(sa.inspect(c).get_table_names()))
    assert "registries" not in names
    assert "image_aliases" not in names
    count = await db.run(lambda c: c.execute(sa.text("SELECT count(*) FROM images")).scalar())
    assert count == 4
    await trio.to_thread.run_sync(upgrade, db)
    rows = await db.run(lambda c: list(c.execute(sa.select(images.c.registry, images.c.tag))))
    assert {tuple(r) for r in rows} == {("", "")}
