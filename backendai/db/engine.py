"""The database adapter: a sync SQLAlchemy engine driven from Trio through threads.

This is the only module that imports ``sqlalchemy.exc``; its errors become
:class:`~backendai.errors.UnavailableError` (cannot connect) or
:class:`~backendai.errors.DatabaseError` here.  Every unit of work is a
function over a :class:`sqlalchemy.Connection` run in one transaction on a
worker thread, limited by a :class:`trio.CapacityLimiter` sized to the pool.

SQLite runs in WAL mode and opens write transactions with ``BEGIN IMMEDIATE``
so concurrent writers queue on the lock instead of failing on upgrade.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc
import trio

from ..errors import DatabaseError, UnavailableError

__all__ = ["Database", "open_database"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _make_engine(url: str, threads: int) -> sa.Engine:
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = sa.create_engine(
            url,
            pool_size=threads,
            max_overflow=0,
            connect_args={"check_same_thread": False, "timeout": 30},
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return sa.create_engine(url, pool_size=threads, max_overflow=0, pool_pre_ping=True)


class Database:
    """Runs transactional units of work on threads; see the module docstring."""

    def __init__(self, engine: sa.Engine, threads: int) -> None:
        self.engine = engine
        self.limiter = trio.CapacityLimiter(threads)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _in_tx(self, fn: Callable[[sa.Connection], T]) -> T:
        try:
            with self.engine.begin() as conn:
                return fn(conn)
        except sqlalchemy.exc.OperationalError as e:
            if e.connection_invalidated or "connect" in str(e.orig).lower():
                raise UnavailableError(f"database {self._where()} unavailable: {e.orig}") from e
            raise DatabaseError(f"database {self._where()}: {e.orig}") from e
        except sqlalchemy.exc.IntegrityError as e:
            raise DatabaseError(f"integrity error in {self._where()}: {e.orig}") from e
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise DatabaseError(f"database {self._where()}: {e}") from e

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    async def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run *fn(conn)* in one transaction on a worker thread and return its result."""
        return await trio.to_thread.run_sync(self._in_tx, fn, limiter=self.limiter)

    def run_sync(self, fn: Callable[[sa.Connection], T]) -> T:
        """The same, for code already on a thread (migrations, CLI admin commands)."""
        return self._in_tx(fn)

    def dispose(self) -> None:
        self.engine.dispose()


@asynccontextmanager
async def open_database(
    url: str, *, threads: int = 4, migrate: bool = True
) -> AsyncIterator[Database]:
    """Create the engine, bring the schema to the newest revision, and dispose at exit."""
    from .migrate import upgrade

    engine = await trio.to_thread.run_sync(_make_engine, url, threads)
    db = Database(engine, threads)
    try:
        if migrate:
            await trio.to_thread.run_sync(upgrade, db)
        yield db
    finally:
        with trio.move_on_after(5, shield=True):
            await trio.to_thread.run_sync(db.dispose)
