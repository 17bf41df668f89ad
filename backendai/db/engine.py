"""The database adapter: a sync SQLAlchemy engine driven from Trio through threads.

This is the only module that imports ``sqlalchemy.exc``; its errors become
:class:`~backendai.errors.UnavailableError` (cannot connect) or
:class:`~backendai.errors.DatabaseError` here.  Every unit of work is a
function over a :class:`sqlalchemy.Connection` run in one transaction on a
worker thread, limited by a :class:`trio.CapacityLimiter` sized to the pool.

SQLite runs in WAL mode and opens write transactions with ``BEGIN IMMEDIATE``
so concurrent writers queue on the lock instead of failing on upgrade; an
in-memory SQLite database is one shared connection used by one thread at a time.
PostgreSQL (``postgresql://`` or ``postgres://``, driven by psycopg 3) gets a
connect timeout and a pre-ping, so a dead server or a dropped connection is an
``UnavailableError`` instead of a hang or a stale-connection error.
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

from ..errors import ConfigError, DatabaseError, UnavailableError

__all__ = ["Database", "open_database"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds to wait for a PostgreSQL server to accept a connection.
_PG_CONNECT_TIMEOUT = 10
# SQLSTATE classes meaning "the server is not there for us": connection exception,
# insufficient resources (too many connections), operator intervention (shutdown).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
# Execution option of a connection whose unit of work only reads (SQLite: deferred BEGIN).
_READ_ONLY = "backendai_read_only"


def _is_memory_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _make_engine(url: str, threads: int) -> sa.Engine:
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            url = "postgresql+psycopg://" + url[len(scheme) :]
    try:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, threads)
        connect_args = {"connect_timeout": _PG_CONNECT_TIMEOUT}
        return sa.create_engine(
            parsed,
            pool_size=threads,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args=connect_args if parsed.get_driver_name() == "psycopg" else {},
        )
    except (sqlalchemy.exc.ArgumentError, ImportError) as e:
        shown = "...@" + url.rpartition("@")[2] if "@" in url else url  # never the password
        raise ConfigError(
            f"unusable database URL {shown}: {e}; expected sqlite:///PATH "
            "or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from e


def _sqlite_engine(url: sa.URL, threads: int) -> sa.Engine:
    connect_args = {"check_same_thread": False, "timeout": 30}
    if _is_memory_sqlite(url):
        engine = sa.create_engine(url, poolclass=sa.StaticPool, connect_args=connect_args)
    else:
        path = os.path.abspath(url.database or "")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise UnavailableError(f"cannot create the directory of database {path}: {e}") from e
        engine = sa.create_engine(url, pool_size=threads, max_overflow=0, connect_args=connect_args)

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
        # A read-only unit takes no write lock: in WAL mode writers go on meanwhile.
        read_only = conn.get_execution_options().get(_READ_ONLY)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _is_unavailable(e: sqlalchemy.exc.DBAPIError) -> bool:
    if e.connection_invalidated:
        return True
    sqlstate = getattr(e.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    message = str(e.orig).lower()  # no SQLSTATE: failed before talking to the server
    return "connect" in message or "unable to open database" in message


class Database:
    """Runs transactional units of work on threads; see the module docstring."""

    def __init__(self, engine: sa.Engine, threads: int) -> None:
        self.engine = engine
        self.limiter = trio.CapacityLimiter(threads)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _in_tx(self, fn: Callable[[sa.Connection], T], read_only: bool = False) -> T:
        try:
            with self.engine.connect() as conn:
                if read_only:
                    conn = conn.execution_options(**{_READ_ONLY: True})
                with conn.begin():
                    return fn(conn)
        except sqlalchemy.exc.IntegrityError as e:
            raise DatabaseError(f"integrity error in {self._where()}: {e.orig}") from e
        except sqlalchemy.exc.DBAPIError as e:
            if _is_unavailable(e):
                raise UnavailableError(f"database {self._where()} unavailable: {e.orig}") from e
            raise DatabaseError(f"database {self._where()}: {e.orig}") from e
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise DatabaseError(f"database {self._where()}: {e}") from e

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    async def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run *fn(conn)* in one transaction on a worker thread and return its result."""
        return await trio.to_thread.run_sync(self._in_tx, fn, limiter=self.limiter)

    def run_sync(self, fn: Callable[[sa.Connection], T], *, read_only: bool = False) -> T:
        """The same, for code already on a thread (migrations, CLI admin commands).

        *read_only*: *fn* only reads; on SQLite it then takes no write lock.
        """
        return self._in_tx(fn, read_only)

    def dispose(self) -> None:
        self.engine.dispose()


@asynccontextmanager
async def open_database(
    url: str, *, threads: int = 4, migrate: bool = True
) -> AsyncIterator[Database]:
    """Create the engine, bring the schema to the newest revision, and dispose at exit."""
    from .migrate import upgrade

    engine = await trio.to_thread.run_sync(_make_engine, url, threads)
    if _is_memory_sqlite(engine.url):
        threads = 1  # one shared connection
    db = Database(engine, threads)
    try:
        if migrate:
            await trio.to_thread.run_sync(upgrade, db)
        yield db
    finally:
        with trio.move_on_after(5, shield=True):
            await trio.to_thread.run_sync(db.dispose)
