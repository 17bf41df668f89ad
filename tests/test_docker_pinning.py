"""Kernels created through a real agent (docker backend) are pinned to their allocation.

The agent role runs in-process on the real Docker engine and the real /sys; the
test talks to its RPC API as the manager does, then reads the pinning back from
Docker (``HostConfig``), from the kernel (``/proc/<pid>/status`` of the
container's process) and from its cgroup (``cpuset.cpus``).  It works on any
number of CPUs: the kernels fill the host exactly.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import trio

from backendai.agent.docker import container_name
from backendai.agent.docker_pinning import ALLOC_LABEL, host_config_options
from backendai.bus import MemoryEventBus
from backendai.config import Config, load_config
from backendai.hw import ContainerResources, DeviceRequest, format_cpulist, parse_cpulist
from backendai.roles.agent import AgentInfo
from backendai.roles.agent import serve as serve_agent

pytestmark = [pytest.mark.docker]
SECRET = "pinning-test-secret"


def test_host_config_options() -> None:
    """The Docker options for an allocation, as docker-py sends them (no engine needed)."""
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.43")
    resources = ContainerResources(
        frozenset({0, 1, 2, 5}), frozenset({1}), (DeviceRequest("nvidia", ("0", "3"), ("gpu",)),)
    )
    hc = api.create_host_config(**host_config_options(resources))
    assert (hc["CpusetCpus"], hc["CpusetMems"]) == ("0-2,5", "1")
    assert hc["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0", "3"], "Capabilities": [["gpu"]], "Options": {}}
    ]  # fmt: skip
    assert host_config_options(None) == {}
    assert host_config_options(ContainerResources()) == {}


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bai-"))  # short: unix socket paths are bounded
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(kernel_image: str, data_dir: Path) -> Config:
    return load_config(
        None,
        env={},
        overrides={
            "cluster": {"secret": SECRET, "data_dir": str(data_dir)},
            "agent": {
                "id": f"pin-{uuid.uuid4().hex[:8]}",
                "port": 0,
                "backend": "docker",
                "network_mode": "none",
                "heartbeat_interval": 0.5,
                "stop_timeout": 1.0,
            },
        },
    )


@asynccontextmanager
async def running_agent(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """The agent role, and a client of its RPC API; stopped (kernels kept) at exit."""
    async with trio.open_nursery() as nursery:
        info: AgentInfo = await nursery.start(partial(serve_agent, config, bus=MemoryEventBus()))
        headers = {"Authorization": f"Bearer {SECRET}"}
        async with httpx.AsyncClient(base_url=f"http://{info.rpc_addr}", headers=headers) as rpc:
            yield rpc
        nursery.cancel_scope.cancel()


async def create(rpc: httpx.AsyncClient, kernel_id: str, cpu: str) -> httpx.Response:
    body = {
        "kernel_id": kernel_id,
        "session_id": "pinning",
        "image": "backendai/python:3.11",
        "slots": {"cpu": cpu, "mem": str(128 * 1024**2)},
    }
    with trio.fail_after(60):
        return await rpc.post("/v1/kernels", json=body)


def cpus_of(allocation: dict[str, Any]) -> set[int]:
    return {int(c) for c in allocation["parts"]["cpu"]}


def read_pinning(container: str) -> dict[str, str]:
    """The container's cpuset as Docker, the kernel and the cgroup each tell it."""
    client = docker.APIClient()
    try:
        attrs = client.inspect_container(container)
    finally:
        client.close()
    pid = attrs["State"]["Pid"]
    assert pid > 0, f"container {container} is not running: {attrs['State']}"
    status = dict(
        line.split(":\t", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":\t" in line
    )
    cgroup = Path(f"/proc/{pid}/cpuset").read_text().strip().lstrip("/")
    v1, v2 = Path("/sys/fs/cgroup/cpuset") / cgroup, Path("/sys/fs/cgroup") / cgroup
    base = v1 if (v1 / "cpuset.cpus").exists() else v2
    return {
        "docker_cpus": attrs["HostConfig"]["CpusetCpus"],
        "docker_mems": attrs["HostConfig"]["CpusetMems"],
        "proc_cpus": status["Cpus_allowed_list"].strip(),
        "proc_mems": status["Mems_allowed_list"].strip(),
        "cgroup_cpus": (base / "cpuset.cpus").read_text().strip(),
        "label": attrs["Config"]["Labels"][ALLOC_LABEL],
    }  # fmt: skip


def remove_containers(agent_id: str) -> None:
    client = docker.APIClient()
    try:
        for c in client.containers(all=True, filters={"label": f"ai.backend.agent-id={agent_id}"}):
            client.remove_container(c["Id"], force=True)
    finally:
        client.close()


async def test_kernels_are_pinned_released_and_rebuilt(config: Config) -> None:
    online = parse_cpulist(await trio.Path("/sys/devices/system/cpu/online").read_text())
    n = len(online)
    try:
        async with running_agent(config) as rpc:
            first = await create(rpc, "k-first", "0.5")
            assert first.status_code == 201, first.text
            a1 = first.json()["allocation"]
            # The rest of the host: every other CPU whole, and the other half of the first's.
            second = await create(rpc, "k-rest", str(n - 0.5))
            assert second.status_code == 201, second.text
            a2 = second.json()["allocation"]
            assert cpus_of(a1) | cpus_of(a2) == online
            for kernel, alloc in (("k-first", a1), ("k-rest", a2)):
                pinned = await trio.to_thread.run_sync(read_pinning, container_name(kernel))
                expected = format_cpulist(cpus_of(alloc))
                nodes = format_cpulist(alloc["nodes"])
                assert (
                    pinned["docker_cpus"]
                    == pinned["proc_cpus"]
                    == pinned["cgroup_cpus"]
                    == expected
                )
                assert pinned["docker_mems"] == pinned["proc_mems"] == nodes
                assert json.loads(pinned["label"]) == alloc
            full = await create(rpc, "k-late", "0.25")
            assert full.status_code == 412, full.text
            assert "cannot allocate cpu=0.25" in full.json()["msg"]
        # A new agent process rebuilds the allocations from the containers' labels.
        async with running_agent(config) as rpc:
            listed = {
                k["kernel_id"]: k["allocation"]
                for k in (await rpc.get("/v1/kernels")).json()["kernels"]
            }
            assert listed == {"k-first": a1, "k-rest": a2}
            still_full = await create(rpc, "k-late", "0.25")
            assert still_full.status_code == 412, still_full.text
            assert (await rpc.delete("/v1/kernels/k-first")).status_code == 200
            late = await create(rpc, "k-late", "0.25")
            assert late.status_code == 201, late.text
            assert cpus_of(late.json()["allocation"]) == cpus_of(a1)  # what k-first released
            pinned = await trio.to_thread.run_sync(read_pinning, container_name("k-late"))
            assert pinned["proc_cpus"] == format_cpulist(cpus_of(a1))
    finally:
        await trio.to_thread.run_sync(remove_containers, config.agent.id)
