"""The database adapter and migrations, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from backendai.db import current_revision, head_revision, open_database, upgrade
from backendai.db.migrate import _alembic_config
from backendai.db.tables import keypairs, metadata, resource_groups, sessions
from backendai.errors import DatabaseError, UnavailableError
from tests.services import fresh_pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a file for SQLite, a fresh database for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'manager.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


def add_keypair(conn: sa.Connection, access_key: str = "AKTEST") -> None:
    conn.execute(
        keypairs.insert().values(
            access_key=access_key,
            secret_key="secret",
            user_id="user@example.com",
            role="user",
            is_active=True,
            created_at=time.time(),
        )
    )


def add_session(conn: sa.Connection, session_id: str, name: str, access_key: str) -> None:
    now = time.time()
    conn.execute(
        sessions.insert().values(
            id=session_id,
            name=name,
            access_key=access_key,
            session_type="interactive",
            status="PENDING",
            status_changed=now,
            image="python:3.11",
            architecture="x86_64",
            resource_group="default",
            cluster_mode="single-node",
            cluster_size=1,
            requested_slots={"cpu": "1", "mem": "1g"},
            created_at=now,
        )
    )


async def test_open_database_migrates_an_empty_database_to_head(db_url: str) -> None:
    async with open_database(db_url) as db:
        assert await trio.to_thread.run_sync(current_revision, db) == head_revision()
        names = await db.run(lambda conn: set(sa.inspect(conn).get_table_names()))
        assert set(metadata.tables) <= names


async def test_migrated_schema_matches_the_tables(db_url: str) -> None:
    def diff(conn: sa.Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with open_database(db_url) as db:
        assert await db.run(diff) == []


async def test_every_migration_goes_down_to_nothing_and_up_again(db_url: str) -> None:
    def to_base(conn: sa.Connection) -> None:
        command.downgrade(_alembic_config(conn), "base")

    async with open_database(db_url) as db:
        await trio.to_thread.run_sync(lambda: db.run_sync(to_base))
        names = await db.run(lambda conn: set(sa.inspect(conn).get_table_names()))
        assert names <= {"alembic_version"}
        await trio.to_thread.run_sync(upgrade, db)
        assert await trio.to_thread.run_sync(current_revision, db) == head_revision()


async def test_upgrade_again_changes_nothing_and_keeps_rows(db_url: str) -> None:
    async with open_database(db_url) as db:
        await db.run(add_keypair)
        await trio.to_thread.run_sync(upgrade, db)
    async with open_database(db_url) as db:  # as at the next manager start
        rows = await db.run(lambda conn: conn.execute(sa.select(keypairs.c.access_key)).all())
        assert [r.access_key for r in rows] == ["AKTEST"]
        assert await trio.to_thread.run_sync(current_revision, db) == head_revision()


async def test_a_live_session_name_is_unique_per_access_key(db_url: str) -> None:
    def setup(conn: sa.Connection) -> None:
        add_keypair(conn, "AK1")
        add_keypair(conn, "AK2")
        conn.execute(resource_groups.insert().values(name="default", created_at=time.time()))
        add_session(conn, "s1", "train", "AK1")

    def terminate_s1(conn: sa.Connection) -> None:
        conn.execute(sessions.update().where(sessions.c.id == "s1").values(terminated_at=1.0))

    async with open_database(db_url) as db:
        await db.run(setup)
        await db.run(lambda conn: add_session(conn, "s2", "train", "AK2"))  # another owner
        with pytest.raises(DatabaseError, match=r"uq_sessions_live_name|UNIQUE"):
            await db.run(lambda conn: add_session(conn, "s3", "train", "AK1"))
        await db.run(terminate_s1)
        await db.run(lambda conn: add_session(conn, "s3", "train", "AK1"))
        live = await db.run(
            lambda conn: conn.execute(
                sa.select(sessions.c.id).where(sessions.c.terminated_at.is_(None))
            ).all()
        )
        assert sorted(r.id for r in live) == ["s2", "s3"]


async def test_a_database_that_does_not_answer_is_unavailable() -> None:
    url = "postgresql://backendai:hunter2@127.0.0.1:1/backendai"
    async with open_database(url, migrate=False) as db:
        with pytest.raises(UnavailableError, match=r"127\.0\.0\.1:1") as info:
            await db.run(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
    assert "hunter2" not in str(info.value)
    with pytest.raises(UnavailableError):
        async with open_database(url):
            pass


async def test_managers_starting_together_migrate_once(db_url: str) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(start_manager, db_url)


async def test_managers_in_several_processes_migrate_once(db_url: str) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(trio.run_process, [sys.executable, "-c", MANAGER_START, db_url])
    await start_manager(db_url)


async def start_manager(db_url: str) -> None:
    async with open_database(db_url) as db:
        assert await trio.to_thread.run_sync(current_revision, db) == head_revision()


MANAGER_START = """
import sys, trio
from backendai.db import open_database
async def main():
    async with open_database(sys.argv[1]):
        pass
trio.run(main)
"""
