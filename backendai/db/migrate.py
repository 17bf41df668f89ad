"""Schema migrations with Alembic, run programmatically at manager start.

The revisions live in ``backendai/db/migrations/versions``.  ``upgrade`` brings
a database (empty or older) to the newest revision inside one transaction, so
an upgrade keeps data and a failed one leaves the old schema intact.

Managers that start together migrate one at a time: on PostgreSQL the upgrade
transaction first takes a transaction-scoped advisory lock (SQLite's
``BEGIN IMMEDIATE`` already serialises it), and within one process a lock
guards Alembic, which keeps the running migration in module globals.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .engine import Database

__all__ = ["current_revision", "head_revision", "upgrade"]

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic's `context` and `op` proxies are module globals: one migration at a time per process.
_alembic_lock = threading.Lock()
# pg_advisory_xact_lock key of schema upgrades ("bai-migr" in ASCII).
_PG_UPGRADE_LOCK = 0x6261692D6D696772


def _alembic_config(conn: sa.Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    def _get(conn: sa.Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    return db.run_sync(_get)


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate *db* to *revision* (default: the newest)."""

    def _upgrade(conn: sa.Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_UPGRADE_LOCK)))
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_alembic_config(conn), revision)
        after = MigrationContext.configure(conn).get_current_revision()
        if before != after:
            log.info("database schema migrated from %s to %s", before or "empty", after)

    with _alembic_lock:
        db.run_sync(_upgrade)
