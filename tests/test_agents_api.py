"""``GET /resource/agents`` and ``backendai admin agent list|info``, end to end.

An in-process cluster on the dummy backend whose agent reads the generated
8-GPU server's sysfs (``agent.sysfs_root``): its heartbeat carries that
topology, the manager stores it, and the API and CLI show it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from backendai.client.api import APIClient, APIResponseError
from backendai.hw import read_topology
from backendai.sched.slots import ResourceSlots

from .cluster import Cluster, cluster_config, open_cluster, query
from .cluster import run_cli as cluster_cli
from .sysfs_fixtures import write_all

IMAGE = "backendai/python:3.11"


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = write_all(tmp_path / "sysfs")["server"]
    async with open_cluster(cluster_config(tmp_path, agent={"sysfs_root": str(server)})) as c:
        yield c


async def run_cli(argv: list[str], cluster: Cluster) -> int:
    return await trio.to_thread.run_sync(
        cluster_cli, argv, cluster
    )  # the CLI runs its own trio.run


async def test_agents_list_and_info(cluster: Cluster, tmp_path: Path) -> None:
    api = cluster.api
    agent_id = cluster.info.agent.agent_id
    listed = (await api.request("GET", "/resource/agents")).json()["agents"]
    assert [a["id"] for a in listed] == [agent_id]
    agent = listed[0]
    assert (agent["status"], agent["resource_group"], agent["backend"]) == (
        "ALIVE",
        "default",
        "dummy",
    )
    assert ResourceSlots.from_json(agent["capacity"]) == ResourceSlots.parse(
        {"cpu": 4, "mem": "8g"}
    )
    assert agent["occupied"] == {}
    expected = read_topology(tmp_path / "sysfs" / "server").summary()
    assert agent["topology"] == json.loads(json.dumps(expected))  # as the heartbeat carried it

    await api.create_session(IMAGE, "busy", resources={"cpu": "2", "mem": "1g"})
    info = (await api.request("GET", f"/resource/agents/{agent_id}")).json()
    assert info["occupied"] == {"cpu": "2", "mem": str(1 << 30)}
    assert ResourceSlots.from_json(info["free"]) == ResourceSlots.parse({"cpu": 2, "mem": "7g"})
    assert [(k["status"], k["slots"]) for k in info["kernels"]] == [
        ("RUNNING", {"cpu": "2", "mem": str(1 << 30)})
    ]
    alive = (await api.request("GET", "/resource/agents", params={"status": "alive,lost"})).json()
    assert len(alive["agents"]) == 1
    none = (await api.request("GET", "/resource/agents", params={"status": "TERMINATED"})).json()
    assert none["agents"] == []


async def test_agents_api_refusals(cluster: Cluster) -> None:
    with pytest.raises(APIResponseError) as e:
        await cluster.api.request("GET", "/resource/agents/nope")
    assert (e.value.status, e.value.msg) == (
        404,
        "no agent 'nope'; `backendai admin agent list` shows them",
    )
    with pytest.raises(APIResponseError) as e:
        await cluster.api.request("GET", "/resource/agents", params={"status": "DEAD"})
    assert e.value.status == 400
    assert e.value.msg == "status: unknown agent status DEAD; expected ALIVE, LOST, TERMINATED"
    query(
        cluster.config,
        "INSERT INTO keypairs (access_key, secret_key, user_id, role, is_active, created_at) "
        "VALUES ('AKIAPLAINUSER0000001', 'user-secret', 'user@example.com', 'user', 1, 0)",
    )
    async with APIClient(cluster.endpoint, "AKIAPLAINUSER0000001", "user-secret") as user:
        for path in ("/resource/agents", f"/resource/agents/{cluster.info.agent.agent_id}"):
            with pytest.raises(APIResponseError) as e:
                await user.request("GET", path)
            assert e.value.status == 403
            assert e.value.msg == (
                f"GET {path}: only a superadmin may inspect agents "
                "(access key 'AKIAPLAINUSER0000001' has role 'user')"
            )


async def test_admin_agent_cli(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    agent_id = cluster.info.agent.agent_id
    await cluster.api.create_session(IMAGE, "busy", resources={"cpu": "1", "mem": "2g"})
    assert await run_cli(["admin", "agent", "list"], cluster) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "ID",
        "STATUS",
        "GROUP",
        "BACKEND",
        "CPU",
        "MEM",
        "GPU",
        "NODES",
        "LAST",
        "HEARTBEAT",
    ]
    assert row.split()[:8] == [agent_id, "ALIVE", "default", "dummy", "1/4", "2g/8g", "-", "2"]

    assert await run_cli(["admin", "agent", "info", agent_id], cluster) == 0
    text = capsys.readouterr().out
    assert "sockets         2" in text
    assert "online cpus     0-95" in text
    assert "occupied        cpu=1 mem=2g" in text
    lines = text.splitlines()
    nodes = lines.index("NUMA nodes:")
    assert lines[nodes + 1].split() == ["NODE", "SOCKET", "CPUS", "MEM", "DISTANCES"]
    assert lines[nodes + 2].split() == ["0", "0", "0-23,48-71", "384g", "10", "21"]
    gpu = next(line for line in lines if line.startswith("0000:1b:00.0"))
    assert gpu.split() == [
        "0000:1b:00.0", "gpu", "nvidia", "0", "16.0", "GT/s", "PCIe", "x16",
        "pci0000:17", ">", "0000:17:00.0", ">", "0000:18:00.0", ">", "0000:19:04.0", "-",
    ]  # fmt: skip
    hca = next(line for line in lines if line.startswith("0000:1c:00.0"))
    assert hca.split()[1:3] == ["nic", "infiniband"]
    assert hca.split()[-1] == "mlx5_0"
    kernels = lines.index("Kernels:")
    assert lines[kernels + 2].split()[1:4] == ["RUNNING", "cpu=1", "mem=2g"]

    assert await run_cli(["admin", "agent", "info", agent_id, "--json"], cluster) == 0
    info: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert info["topology"]["counts"] == {"gpu": 8, "nic": 3, "nvme": 1}
    assert await run_cli(["admin", "agent", "info", "ghost"], cluster) == 1
    assert "no agent 'ghost'" in capsys.readouterr().err
