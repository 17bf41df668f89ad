"""Faults with the roles as separate processes on real Docker and real Redis.

* An agent killed with SIGKILL is marked LOST within its timeout; restarted, it
  re-adopts its running containers: zero lost, zero orphaned.
* A manager killed while creating 20 sessions, then restarted, drives every one
  to RUNNING or to a terminal state with a reason: zero stuck.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import sqlalchemy as sa
import trio

from backendai.client.api import APIClient

from .conftest import docker_answers, require
from .procs import RoleProcess, free_port, role_process, wait_for_file, write_config
from .services import redis_answers, redis_url, require_service

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]

HEARTBEAT_TIMEOUT = 3.0
LIVE = ("PENDING", "SCHEDULED", "PREPARING", "PULLING", "PREPARED", "CREATING", "TERMINATING")


@dataclass
class Deployment:
    data_dir: Path
    config: Path
    agent_id: str
    prefix: str

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'manager.db'}"

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params))
        finally:
            engine.dispose()

    def credentials(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.data_dir / "credentials.json").read_text())
        return data

    def containers(self) -> list[dict[str, Any]]:
        """Our agent's containers as the engine lists them (Id, State, Labels)."""
        client = docker.APIClient()
        try:
            found: list[dict[str, Any]] = client.containers(
                all=True, filters={"label": f"ai.backend.agent-id={self.agent_id}"}
            )
            return found
        finally:
            client.close()


@pytest.fixture
def deployment(tmp_path: Path, kernel_image: str) -> Deployment:
    require(docker_answers(), "a Docker engine")
    require_service(redis_answers(redis_url()), f"Redis at {redis_url()}")
    agent_id = f"fault-{uuid.uuid4().hex[:8]}"
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path / "backendai.toml",
        {
            "cluster": {"secret": "fault-test-secret", "data_dir": str(tmp_path)},
            "manager": {
                "port": free_port(),
                "heartbeat_timeout": HEARTBEAT_TIMEOUT,
                "reconcile_interval": 0.5,
                "lease_timeout": 3.0,
                "launch_timeout": 60.0,
            },
            "agent": {
                "id": agent_id,
                "port": free_port(),
                "backend": "docker",
                "network_mode": "none",
                "heartbeat_interval": 0.5,
                "cpu": 8.0,
                "mem": "16g",
                "stop_timeout": 1.0,
            },
            "bus": {"kind": "redis", "redis_url": redis_url(), "prefix": prefix},
        },
    )
    return Deployment(tmp_path, config, agent_id, prefix)


@pytest.fixture
async def cleanup_containers(deployment: Deployment) -> AsyncIterator[None]:
    yield
    client = docker.APIClient()
    for c in deployment.containers():
        client.remove_container(c["Id"], force=True)
    client.close()


async def _poll(deadline: float, what: str, check: Any) -> Any:
    """Call *check* (sync, may touch the DB) until it returns a truthy value."""
    with trio.fail_after(deadline):
        while True:
            result = await trio.to_thread.run_sync(check)
            if result:
                return result
            await trio.sleep(0.2)  # polling other processes' state: no event to await
    raise AssertionError(what)


async def _api(dep: Deployment, manager: RoleProcess) -> APIClient:
    await wait_for_file(dep.data_dir / "credentials.json", manager)
    creds = dep.credentials()
    return APIClient(creds["endpoint"], creds["access_key"], creds["secret_key"])


async def _agent_status(dep: Deployment, status: str, deadline: float) -> float:
    t0 = time.monotonic()
    await _poll(
        deadline,
        f"agent {dep.agent_id} {status}",
        lambda: dep.query(
            "SELECT 1 FROM agents WHERE id = :a AND status = :s", a=dep.agent_id, s=status
        ),
    )
    return time.monotonic() - t0


async def test_agent_sigkill_lost_then_readopts(
    deployment: Deployment, cleanup_containers: None
) -> None:
    dep = deployment
    with (
        role_process("manager", dep.config, dep.data_dir) as manager,
        role_process("agent", dep.config, dep.data_dir) as agent,
    ):
        async with await _api(dep, manager) as api:
            await _agent_status(dep, "ALIVE", 30)
            ids = []
            for i in range(2):
                r = await api.create_session(
                    "backendai/python:3.11",
                    f"survivor-{i}",
                    resources={"cpu": "0.5", "mem": "256m"},
                    max_wait=60,
                )
                assert r["status"] == "RUNNING", r
                ids.append(r["sessionId"])
            before = {c["Id"] for c in dep.containers()}
            assert len(before) == 2

            agent.kill()
            took = await _agent_status(dep, "LOST", HEARTBEAT_TIMEOUT + 5)
            assert took <= HEARTBEAT_TIMEOUT + 3, f"marked LOST after {took:.1f} s"
            for sid in ids:
                info = await api.get_session(sid)
                assert info["status"] == "RUNNING"
                assert info["statusInfo"] == "agent-lost"
            assert {c["Id"] for c in dep.containers() if c["State"] == "running"} == before

            agent.start()
            await _agent_status(dep, "ALIVE", 30)
            # Re-adopted: the same containers, still running, and nothing else.
            assert {c["Id"] for c in dep.containers() if c["State"] == "running"} == before
            for sid in ids:
                info = await api.get_session(sid)
                assert info["status"] == "RUNNING"
                assert info["statusInfo"] == ""
                assert info["containerId"] in before

            for sid in ids:
                await api.destroy_session(sid)
            await _poll(30, "containers removed", lambda: not dep.containers())
            # The container goes first; the session row follows when the agent's event is in.
            await _poll(
                30,
                "sessions TERMINATED",
                lambda: {s for (s,) in dep.query("SELECT status FROM sessions")} == {"TERMINATED"},
            )


async def test_manager_killed_mid_creation_leaves_nothing_stuck(
    deployment: Deployment, cleanup_containers: None
) -> None:
    dep = deployment
    n = 20
    with (
        role_process("manager", dep.config, dep.data_dir) as manager,
        role_process("agent", dep.config, dep.data_dir) as _agent,
    ):
        async with await _api(dep, manager) as api:
            await _agent_status(dep, "ALIVE", 30)

            async def create(i: int) -> None:
                await api.create_session(
                    "backendai/python:3.11",
                    f"batch-{i:02d}",
                    resources={"cpu": "0.2", "mem": "256m"},
                    enqueue_only=True,
                )

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(create, i)
            # Kill it while launches are under way (some kernels past SCHEDULED, not all RUNNING).
            await _poll(
                30,
                "launches under way",
                lambda: (
                    dep.query(
                        "SELECT count(*) FROM kernels WHERE status IN ('PREPARING', 'CREATING', 'RUNNING')"
                    )[0][0]
                    >= 1
                ),
            )
            manager.kill()
            mid = dict(dep.query("SELECT status, count(*) FROM sessions GROUP BY status"))
            assert sum(mid.get(s, 0) for s in LIVE) > 0, f"nothing was mid-creation: {mid}"

        manager.start()
        async with await _api(dep, manager) as api:

            def settled() -> bool:
                rows = dep.query("SELECT status, status_info FROM sessions")
                return len(rows) == n and all(s == "RUNNING" or s not in LIVE for s, _ in rows)

            await _poll(90, "every session RUNNING or ended", settled)
            rows = dep.query("SELECT name, status, status_info FROM sessions")
            stuck = [r for r in rows if r[1] in LIVE]
            assert stuck == []
            unexplained = [r for r in rows if r[1] not in ("RUNNING",) and not r[2]]
            assert unexplained == [], "every ended session carries a reason"

            running = {k for (k,) in dep.query("SELECT id FROM kernels WHERE status = 'RUNNING'")}
            # No orphans: the containers are exactly the RUNNING kernels (after a heartbeat or two).
            await _poll(
                20,
                "containers match the RUNNING kernels",
                lambda: {c["Labels"]["ai.backend.kernel-id"] for c in dep.containers()} == running,
            )

            for name, _status, _ in rows:
                await api.destroy_session(name)
            await _poll(60, "containers removed", lambda: not dep.containers())
            ended = {"TERMINATED", "CANCELLED", "ERROR"}
            await _poll(
                30,
                "every session ended",
                lambda: {s for (s,) in dep.query("SELECT status FROM sessions")} <= ended,
            )
