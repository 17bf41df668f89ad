"""An in-process cluster (role ``all``) on loopback ports, and a client signed by its superadmin."""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from backendai.client.api import APIClient, APIResponseError
from backendai.client.cli_admin import add_admin_commands
from backendai.client.cli_session import add_session_commands
from backendai.config import Config, load_config
from backendai.roles.allinone import AllInfo
from backendai.roles.allinone import serve as serve_all
from backendai.roles.manager import db_url

__all__ = [
    "Cluster",
    "add_user",
    "cluster_config",
    "open_cluster",
    "query",
    "wait_for_agents",
    "wait_status",
]


def cluster_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    """Fast loops, port 0 everywhere, the dummy backend unless a test says otherwise."""
    overrides: dict[str, dict[str, Any]] = {
        "cluster": {"data_dir": str(data_dir), "secret": "test-cluster-secret"},
        "manager": {"port": 0, "reconcile_interval": 0.5, "heartbeat_timeout": 3.0},
        "agent": {
            # Unique per cluster: agents sharing one Docker engine must not share an id, or each
            # would take the other's containers for its own orphans.
            "id": f"test-{uuid.uuid4().hex[:10]}",
            "port": 0,
            "backend": "dummy",
            "heartbeat_interval": 0.5,
            "cpu": 4.0,
            "mem": "8g",
            "network_mode": "none",
            "dummy_create_delay": 0.05,
            "dummy_destroy_delay": 0.02,
        },
        "storage": {"port": 0, "client_port": 0},
        "appproxy": {"port": 0, "api_port": 0, "announce_interval": 2.0},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(None, env={}, overrides=overrides)


@dataclass
class Cluster:
    info: AllInfo
    config: Config
    api: APIClient
    cancel_scope: trio.CancelScope

    @property
    def endpoint(self) -> str:
        return self.info.manager.endpoint


def query(config: Config, sql: str, **params: Any) -> list[Any]:
    """Read the manager's database directly (tests assert on the source of truth)."""
    engine = sa.create_engine(db_url(config))
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


async def wait_for_agents(config: Config, count: int, status: str = "ALIVE") -> None:
    """Poll until *count* agents have the *status* (their heartbeats were applied)."""
    while True:
        rows = await trio.to_thread.run_sync(
            lambda: query(config, "SELECT count(*) FROM agents WHERE status = :s", s=status)
        )
        if rows[0][0] >= count:
            return
        await trio.sleep(0.1)  # polling the database: there is no event to await


async def _end_all_sessions(api: APIClient) -> None:
    for s in await api.list_sessions(all=True):
        if s["status"] not in ("TERMINATED", "CANCELLED", "ERROR"):
            await api.destroy_session(s["sessionId"], forced=True)
    ended = ("TERMINATED", "CANCELLED", "ERROR")
    while True:  # polling the manager: there is no event to await
        if all(s["status"] in ended for s in await api.list_sessions(all=True)):
            return
        await trio.sleep(0.1)


@asynccontextmanager
async def open_cluster(config: Config) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        info: AllInfo = await nursery.start(serve_all, config)
        creds = info.manager.credentials
        async with APIClient(info.manager.endpoint, creds.access_key, creds.secret_key) as api:
            with trio.fail_after(20):
                await wait_for_agents(config, 1)
            try:
                yield Cluster(info, config, api, nursery.cancel_scope)
            finally:
                # Leave no containers behind: end every session, within a bound.
                with trio.move_on_after(30, shield=True):
                    await _end_all_sessions(api)
        nursery.cancel_scope.cancel()


async def wait_status(
    api: APIClient, ref: str, status: str, *, deadline: float = 15.0
) -> dict[str, Any]:
    """Poll the manager until session *ref* has *status*; fail after *deadline* seconds."""
    with trio.fail_after(deadline):
        while True:
            info = await api.get_session(ref)
            if info["status"] == status:
                return info
            await trio.sleep(0.05)  # polling a server over HTTP: there is no event to await


async def add_user(c: Cluster, user_id: str, role: str = "user") -> APIClient:
    """A new user *user_id* (email) in the default domain with a keypair, and a client signed with it."""
    from .accounts_fixtures import add_account

    account = await add_account(c.config, user_id, role=role)
    return APIClient(c.endpoint, account.access_key, account.secret_key)


def client_env(c: Cluster, home: Path) -> dict[str, str]:
    """The environment a client CLI (ours or the official one) needs to reach *c* as its superadmin."""
    creds = c.info.manager.credentials
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "BACKEND_ENDPOINT": c.endpoint,
        "BACKEND_ACCESS_KEY": creds.access_key,
        "BACKEND_SECRET_KEY": creds.secret_key,
        "BACKEND_ENDPOINT_TYPE": "api",
    }


async def call(api: APIClient, method: str, path: str, **kw: Any) -> Any:
    """The JSON answer of a request that must succeed."""
    return (await api.request(method, path, **kw)).json()


async def refused(api: APIClient, method: str, path: str, **kw: Any) -> APIResponseError:
    """The error of a request that must fail."""
    with pytest.raises(APIResponseError) as e:
        await api.request(method, path, **kw)
    return e.value


def run_cli(argv: list[str], c: Cluster) -> int:
    """Our CLI's ``admin`` and ``session`` commands against *c* as its superadmin, in this thread
    (the CLI runs its own ``trio.run``: call it through ``trio.to_thread``)."""
    parser = argparse.ArgumentParser(prog="backendai")
    sub = parser.add_subparsers(dest="command", required=True)
    add_admin_commands(sub)
    add_session_commands(sub)
    args = parser.parse_args(argv)
    creds = c.info.manager.credentials
    env = {
        "BACKEND_ENDPOINT": c.endpoint,
        "BACKEND_ACCESS_KEY": creds.access_key,
        "BACKEND_SECRET_KEY": str(creds.secret_key),
    }
    code: int = args.func(args, env=env)
    return code
