"""The agent's allocations through its kernel registry: pin, release, rebuild, heartbeat.

The backend is the dummy one made to pin (it records each kernel's allocation at
creation, as Docker records it in a label), on the generated 8-GPU server.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from backendai.agent.allocator import Allocator
from backendai.agent.backend import KernelInfo, KernelSpec
from backendai.agent.dummy import IMAGE, DummyBackend
from backendai.agent.heartbeat import build_heartbeat
from backendai.agent.registry import KernelRegistry
from backendai.agent.rpc import kernel_json
from backendai.bus import MemoryEventBus
from backendai.config import AgentConfig
from backendai.errors import ImageNotFound, InsufficientResources
from backendai.hw import (
    Allocation,
    ContainerResources,
    Topology,
    load_device_plugins,
    read_topology,
)
from backendai.sched.slots import ResourceSlots
from tests.sysfs_fixtures import write_all

CONFIG = AgentConfig(reserved_mem="0", dummy_create_delay=0.0, dummy_destroy_delay=0.0)


class PinningDummy(DummyBackend):
    """Records each kernel's allocation and container resources when it is first created."""

    pins_resources = True
    shares_host_network = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.recorded: dict[str, Allocation | None] = {}
        self.resources: dict[str, ContainerResources | None] = {}

    async def create(self, spec: KernelSpec) -> KernelInfo:
        info = await super().create(spec)
        self.recorded.setdefault(spec.kernel_id, spec.allocation)
        self.resources.setdefault(spec.kernel_id, spec.resources)
        return replace(info, allocation=self.recorded[spec.kernel_id])

    async def destroy(self, kernel_id: str) -> int | None:
        self.recorded.pop(kernel_id, None)
        return await super().destroy(kernel_id)

    async def list(self) -> list[KernelInfo]:
        return [replace(k, allocation=self.recorded.get(k.kernel_id)) for k in await super().list()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    return read_topology(write_all(tmp_path_factory.mktemp("sysfs"))["server"])


def registry_on(
    server: Topology, tmp_path: Path, backend: PinningDummy | None = None
) -> KernelRegistry:
    backend = backend or PinningDummy(CONFIG, agent_id="a1", scratch_dir=tmp_path)
    allocator = Allocator(server, load_device_plugins(), CONFIG)
    return KernelRegistry(
        backend, MemoryEventBus(), "a1", tmp_path, topology=server, allocator=allocator
    )


def spec(tmp_path: Path, kernel_id: str, slots: str, image: str = IMAGE.name) -> KernelSpec:
    parsed = ResourceSlots.parse(dict(kv.split("=") for kv in slots.split()))
    return KernelSpec(kernel_id, "s1", image, parsed, tmp_path / kernel_id / "ipc")


def cpus(a: Allocation | None) -> set[int]:
    assert a is not None
    return {int(c) for c in a.parts["cpu"]}


async def test_create_pins_and_destroy_releases(server: Topology, tmp_path: Path) -> None:
    registry = registry_on(server, tmp_path)
    backend = registry.backend
    assert isinstance(backend, PinningDummy)
    assert registry.allocator is not None
    info = await registry.create(spec(tmp_path, "k1", "cpu=16 mem=64g cuda.device=2"))
    assert info.allocation is not None
    assert cpus(info.allocation) == {*range(8), *range(48, 56)}
    assert backend.resources["k1"] == registry.allocator.container(info.allocation)
    assert backend.resources["k1"].environ["NVIDIA_VISIBLE_DEVICES"] == "0,1"  # type: ignore[union-attr]
    # The RPC answer carries the allocation as JSON.
    assert kernel_json(info)["allocation"]["parts"]["cuda.device"] == {
        "0000:1a:00.0": "1",
        "0000:1b:00.0": "1",
    }
    # Asking again for the same kernel (a retried launch) allocates nothing more.
    again = await registry.create(spec(tmp_path, "k1", "cpu=16 mem=64g cuda.device=2"))
    assert again.allocation == info.allocation
    assert registry.allocator.occupied().human() == "cpu=16 cuda.device=2 mem=64g"
    await registry.destroy("k1")
    assert registry.allocator.live() == {}
    assert registry.allocator.occupied() == ResourceSlots()


async def test_refusals_leave_nothing_behind(server: Topology, tmp_path: Path) -> None:
    registry = registry_on(server, tmp_path)
    assert registry.allocator is not None
    with pytest.raises(InsufficientResources, match=r"kernel k1: cannot allocate cuda\.device=9"):
        await registry.create(spec(tmp_path, "k1", "cpu=1 cuda.device=9"))
    with pytest.raises(ImageNotFound):
        await registry.create(spec(tmp_path, "k2", "cpu=1", image="no/such:image"))
    assert registry.allocator.live() == {}
    assert await registry.backend.list() == []


async def test_a_restarted_agent_rebuilds_from_its_kernels(
    server: Topology, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = registry_on(server, tmp_path)
    backend = first.backend
    assert isinstance(backend, PinningDummy)
    await first.create(spec(tmp_path, "k1", "cpu=4 mem=8g cuda.device=1"))
    await first.create(spec(tmp_path, "k2", "cpu=2.5"))
    assert first.allocator is not None
    # The next agent process: a new allocator, rebuilt from the backend's records.
    second = registry_on(server, tmp_path, backend)
    assert second.allocator is not None
    second.allocator.rebuild(await backend.list())
    assert second.allocator.live() == first.allocator.live()
    assert second.allocator.free() == first.allocator.free()
    k3 = await second.create(spec(tmp_path, "k3", "cpu=4"))
    assert not cpus(k3.allocation) & (cpus(backend.recorded["k1"]) | cpus(backend.recorded["k2"]))
    # A process that did not rebuild meets the kernel's container when it is asked again:
    # the container's recorded allocation wins (and the clash with k9 is reported).
    third = registry_on(server, tmp_path, backend)
    assert third.allocator is not None
    k9 = await third.create(spec(tmp_path, "k9", "cpu=4"))
    assert cpus(k9.allocation) == cpus(backend.recorded["k1"])
    with caplog.at_level(logging.WARNING, logger="backendai.agent.allocator"):
        again = await third.create(spec(tmp_path, "k1", "cpu=4 mem=8g cuda.device=1"))
    assert again.allocation == backend.recorded["k1"]
    assert third.allocator.get("k1") == backend.recorded["k1"]
    assert "it is shared with another kernel" in caplog.text


async def test_kernels_without_a_record_are_accounted(server: Topology, tmp_path: Path) -> None:
    allocator = Allocator(server, load_device_plugins(), CONFIG)
    old = KernelInfo("old", "s", "img", "running", ResourceSlots.parse({"cpu": 8}), "c", 0.0)
    huge = KernelInfo("huge", "s", "img", "running", ResourceSlots.parse({"cpu": 999}), "c", 0.0)
    allocator.rebuild([old, huge])
    assert list(allocator.live()) == ["old"]  # the one that cannot fit is only logged
    assert allocator.occupied().human() == "cpu=8"


async def test_heartbeat_carries_topology_capacity_and_placements(
    server: Topology, tmp_path: Path
) -> None:
    registry = registry_on(server, tmp_path)
    await registry.create(spec(tmp_path, "k1", "cpu=2 cuda.device=1"))
    capacity = (await registry.capacity()).to_json()
    assert capacity == {"cpu": "96", "cuda.device": "8", "mem": "824633720832"}
    hb = await build_heartbeat(registry, CONFIG, "127.0.0.1:1", capacity, [IMAGE])
    hw = hb["hardware"]
    assert (hw["sockets"], len(hw["nodes"]), hw["counts"]) == (
        2,
        2,
        {"gpu": 8, "nic": 3, "nvme": 1},
    )
    assert hw["allocation_policy"] == "prefer-single-node"
    assert hw["slots"] == {"cpu": "shares", "cuda.device": "whole", "mem": "divisible"}
    assert hw["allocations"]["k1"]["parts"]["cuda.device"] == {"0000:1a:00.0": "1"}
    assert hb["capacity"] == capacity


async def test_backends_that_do_not_pin_report_the_topology_only(
    server: Topology, tmp_path: Path
) -> None:
    backend = DummyBackend(CONFIG, agent_id="a1", scratch_dir=tmp_path)
    registry = KernelRegistry(backend, MemoryEventBus(), "a1", tmp_path, topology=server)
    info = await registry.create(spec(tmp_path, "k1", "cpu=2"))
    assert info.allocation is None
    assert await registry.capacity() == await backend.capacity()  # the configured one
    assert registry.hardware() == server.summary()
