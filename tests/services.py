"""The real Redis and PostgreSQL the integration tests use (start them with ``scripts/services``).

``BACKENDAI_TEST_REDIS_URL`` and ``BACKENDAI_TEST_PG_URL`` select the servers.  A
server that does not answer skips its tests locally, and fails them when ``CI``
is set: in CI the integration tests always run.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import coredis
import psycopg
import pytest
import trio
from psycopg import sql

from backendai.bus import RedisEventBus, open_redis_bus
from backendai.config import BusConfig
from backendai.errors import UnavailableError

__all__ = [
    "fresh_pg_database",
    "pg_url",
    "redis_answers",
    "redis_bus",
    "redis_url",
    "require_redis",
    "require_service",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PG_URL = "postgresql://backendai:backendai@127.0.0.1:5432/postgres"


def redis_url() -> str:
    return os.environ.get("BACKENDAI_TEST_REDIS_URL", DEFAULT_REDIS_URL)


def pg_url() -> str:
    """A PostgreSQL URL whose role may create databases (its database is not used)."""
    return os.environ.get("BACKENDAI_TEST_PG_URL", DEFAULT_PG_URL)


def require_service(
    ok: bool, what: str, hint: str = "scripts/test (or scripts/services) starts it"
) -> None:
    """Skip the test when *what* is not available, or fail it when env ``CI`` is set."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not available, and CI is set: integration tests must run in CI")
    pytest.skip(f"{what} is not available; {hint}")


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at *url* (blocking, at most ~2 s)."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        return True  # TLS, unix sockets: let the bus find out
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64)[:1] in (b"+", b"-")  # PONG, or an error such as NOAUTH
    except OSError:
        return False


def require_redis() -> None:
    """Skip (or, with ``CI``, fail) unless the test Redis answers; call from a sync fixture."""
    require_service(redis_answers(redis_url()), f"Redis at {_hide_password(redis_url())}")


@asynccontextmanager
async def redis_bus(
    *, prefix: str | None = None, claim_idle: float = 30.0, max_deliveries: int = 10
) -> AsyncIterator[RedisEventBus]:
    """A bus on the test Redis under a unique key *prefix*, whose keys are deleted at exit."""
    prefix = prefix or f"test-{uuid.uuid4().hex[:12]}"
    config = BusConfig(kind="redis", redis_url=redis_url(), prefix=prefix)
    connected = False
    try:
        async with open_redis_bus(
            config, claim_idle=claim_idle, max_deliveries=max_deliveries, connect_timeout=2.0
        ) as bus:
            connected = True
            try:
                yield bus
            finally:
                with trio.move_on_after(5, shield=True):
                    await _delete_keys(prefix)
    except UnavailableError as e:
        if connected:
            raise
        require_service(False, f"Redis ({e})")
        raise


async def _delete_keys(prefix: str) -> None:
    async with coredis.Redis.from_url(redis_url()) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(keys)


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """Create an empty database on the test PostgreSQL, yield its URL, and drop it after."""
    admin_url = pg_url()
    dbname = f"backendai_test_{uuid.uuid4().hex[:12]}"
    name = sql.Identifier(dbname)
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    except psycopg.OperationalError as e:
        reason = " ".join(str(e).split())
        require_service(False, f"PostgreSQL at {_hide_password(admin_url)} ({reason})")
        raise
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{dbname}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(name))


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***", 1)))
