"""Device plugins and allocation policies on the generated machines (table-driven).

Each case is a machine, a policy and a sequence of requests made one after the
other (earlier allocations stay held); each outcome is the allocation chosen
(CPUs, memory per node, devices), its distance scores and nearest NIC, or the
error.  Distances: 0 same device, 1 same PCIe switch, 2 same root port, 3 same
NUMA node, 4 same socket, 5 across sockets.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backendai.agent.allocator import Allocator
from backendai.config import AgentConfig
from backendai.errors import ConfigError, InsufficientResources
from backendai.hw import (
    Allocation,
    ContainerResources,
    DeviceRequest,
    SlotMode,
    SlotSpec,
    Unit,
    format_cpulist,
    load_device_plugins,
    read_topology,
)
from backendai.hw.plugins.cpu import cpu_capacities
from backendai.hw.units import split_exact
from backendai.sched.slots import ResourceSlots, format_bytes
from tests.sysfs_fixtures import write_all

G = 1024**3


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_all(tmp_path_factory.mktemp("sysfs"))


def host(roots: dict[str, Path], machine: str, **config: Any) -> Allocator:
    cfg = AgentConfig(**{"reserved_mem": "0", **config})
    return Allocator(read_topology(roots[machine]), load_device_plugins(), cfg)


def shown(a: Allocation) -> dict[str, Any]:
    """An allocation as the tables below write it."""
    out: dict[str, Any] = {"cpu": format_cpulist(int(c) for c in a.parts.get("cpu", {}))}
    out["mem"] = {int(n): format_bytes(v) for n, v in a.parts.get("mem", {}).items()}
    for slot in sorted(set(a.parts) - {"cpu", "mem"}):
        out[slot] = {u: f"{v.normalize():f}" for u, v in sorted(a.parts[slot].items())}
    out["distances"] = a.distances
    out["nic"] = a.nic
    return out


def req(text: str) -> ResourceSlots:
    return ResourceSlots.parse(dict(kv.split("=") for kv in text.split()))


CASES: list[tuple[str, str, dict[str, Any], list[tuple[str, Any]]]] = [
    ("server", "prefer-single-node", {}, [
        # Two GPUs under one switch, its HCA, cores and memory on their node.
        ("cpu=16 mem=64g cuda.device=2", {
            "cpu": "0-7,48-55", "mem": {0: "64g"},
            "cuda.device": {"0000:1a:00.0": "1", "0000:1b:00.0": "1"},
            "distances": {"cuda.device": 1, "numa": 3}, "nic": "0000:1c:00.0"}),
        ("cpu=16 mem=64g cuda.device=2", {
            "cpu": "8-15,56-63", "mem": {0: "64g"},
            "cuda.device": {"0000:3d:00.0": "1", "0000:3e:00.0": "1"},
            "distances": {"cuda.device": 1, "numa": 3}, "nic": "0000:1c:00.0"}),
        # Node 0 has no GPU left: the next pair under one switch, on node 1, with its HCA.
        ("cpu=16 mem=64g cuda.device=2", {
            "cpu": "24-31,72-79", "mem": {1: "64g"},
            "cuda.device": {"0000:88:00.0": "1", "0000:89:00.0": "1"},
            "distances": {"cuda.device": 1, "numa": 3}, "nic": "0000:8a:00.0"}),
        ("cpu=8 cuda.device=4", "cannot allocate cuda.device=4 (policy prefer-single-node): "
                                "only 2 free on this agent"),
        # No node has 40 free CPUs: 32 from node 1 (the freest), 8 from node 0.
        ("cpu=40 mem=16g", {
            "cpu": "16-19,32-47,64-67,80-95", "mem": {1: "16g"},
            "distances": {"numa": 5}, "nic": "0000:1c:00.0"}),
        ("cpu=64", "cannot allocate cpu=64 (policy prefer-single-node): only 8 free on this agent"),
        # A share of one CPU: the fitting node, the tightest fit.
        ("cpu=0.5 mem=1g", {"cpu": "20", "mem": {0: "1g"}, "distances": {"numa": 3},
                            "nic": "0000:1c:00.0"}),
        ("cpu=0.5", {"cpu": "20", "mem": {}, "distances": {"numa": 3}, "nic": "0000:1c:00.0"}),
        ("mem=700g", "cannot allocate mem=700g (policy prefer-single-node): "
                     "only 559g free on this agent"),
    ]),
    ("server", "prefer-single-node", {}, [
        # Three GPUs: both switches of node 0 (one whole, one from the other).
        ("cpu=4 cuda.device=3", {
            "cpu": "0-1,48-49", "mem": {},
            "cuda.device": {"0000:1a:00.0": "1", "0000:1b:00.0": "1", "0000:3d:00.0": "1"},
            "distances": {"cuda.device": 3, "numa": 3}, "nic": "0000:1c:00.0"}),
        # Five more: the whole other node and the last one of node 0; CPUs with the four.
        ("cpu=4 cuda.device=5", {
            "cpu": "24-25,72-73", "mem": {},
            "cuda.device": {"0000:3e:00.0": "1", "0000:88:00.0": "1", "0000:89:00.0": "1",
                            "0000:b1:00.0": "1", "0000:b2:00.0": "1"},
            "distances": {"cuda.device": 5, "numa": 5}, "nic": "0000:1c:00.0"}),
        ("cuda.device=1.5", "cannot allocate cuda.device=1.5 (policy prefer-single-node): "
                            "only 0 free on this agent"),
    ]),
    ("server", "prefer-single-node", {"cuda_slot": "cuda.shares"}, [
        ("cuda.shares=0.5", {"cpu": "", "mem": {}, "cuda.shares": {"0000:1a:00.0": "0.5"},
                             "distances": {"cuda.shares": 0, "numa": 3}, "nic": "0000:1c:00.0"}),
        ("cuda.shares=0.5", {"cpu": "", "mem": {}, "cuda.shares": {"0000:1a:00.0": "0.5"},
                             "distances": {"cuda.shares": 0, "numa": 3}, "nic": "0000:1c:00.0"}),
        # A whole GPU and half of its switch neighbour, not of the half-used one on the node.
        ("cuda.shares=0.5", {"cpu": "", "mem": {}, "cuda.shares": {"0000:1b:00.0": "0.5"},
                             "distances": {"cuda.shares": 0, "numa": 3}, "nic": "0000:1c:00.0"}),
        ("cpu=2 cuda.shares=1.5", {
            "cpu": "0,48", "mem": {}, "cuda.shares": {"0000:3d:00.0": "1", "0000:3e:00.0": "0.5"},
            "distances": {"cuda.shares": 1, "numa": 3}, "nic": "0000:1c:00.0"}),
    ]),
    ("epyc", "prefer-single-node", {}, [
        ("cpu=8 mem=32g cuda.device=1", {
            "cpu": "8-11,72-75", "mem": {1: "32g"}, "cuda.device": {"0000:21:00.0": "1"},
            "distances": {"cuda.device": 0, "numa": 3}, "nic": "0000:12:00.0"}),
        # 20 CPUs fit no node (16 each): node 0, then the nearest (same socket, SLIT 12).
        ("cpu=20 mem=100g", {
            "cpu": "0-7,12-13,64-71,76-77", "mem": {0: "64g", 1: "32g", 2: "4g"},
            "distances": {"numa": 4}, "nic": "0000:12:00.0"}),
        # GPUs sit alone on root ports, one per node; of 41 (socket 0), 61 and 81 (socket 1)
        # two on one socket beat two across.
        ("cpu=4 cuda.device=2", {
            "cpu": "40-41,104-105", "mem": {},
            "cuda.device": {"0000:61:00.0": "1", "0000:81:00.0": "1"},
            "distances": {"cuda.device": 4, "numa": 4}, "nic": "0000:12:00.0"}),
        ("cpu=127", "cannot allocate cpu=127 (policy prefer-single-node): "
                    "only 95 free on this agent"),
    ]),
    ("epyc", "interleaved", {}, [
        # Round-robin over the 8 nodes, whole cores; memory evenly over all of them.
        ("cpu=16 mem=64g", {
            "cpu": "0,8,16,24,32,40,48,56,64,72,80,88,96,104,112,120",
            "mem": {n: "8g" for n in range(8)}, "distances": {"numa": 5}, "nic": "0000:12:00.0"}),
        ("cpu=3 mem=3g cuda.device=1", {
            "cpu": "1,9,17", "mem": {n: "384m" for n in range(8)},
            "cuda.device": {"0000:21:00.0": "1"},
            "distances": {"cuda.device": 0, "numa": 5}, "nic": "0000:12:00.0"}),
    ]),
    ("workstation", "prefer-single-node", {}, [
        ("cpu=4 mem=16g cuda.device=1", {
            "cpu": "0-1,8-9", "mem": {0: "16g"}, "cuda.device": {"0000:01:00.0": "1"},
            "distances": {"cuda.device": 0, "numa": 3}, "nic": "0000:03:00.0"}),
        ("cuda.device=1", "cannot allocate cuda.device=1 (policy prefer-single-node): "
                          "only 0 free on this agent"),
        # One whole CPU, and the half on its hyperthread sibling.
        ("cpu=1.5", {"cpu": "2,10", "mem": {}, "distances": {"numa": 3}, "nic": "0000:03:00.0"}),
        # The other half of that sibling: the tightest fit.
        ("cpu=0.5", {"cpu": "10", "mem": {}, "distances": {"numa": 3}, "nic": "0000:03:00.0"}),
        ("cpu=11", "cannot allocate cpu=11 (policy prefer-single-node): only 10 free on this agent"),
        ("cuda.device=0.5", "cannot allocate cuda.device=0.5 (policy prefer-single-node): "
                            "only 0 free on this agent"),
    ]),
    ("workstation", "prefer-single-node", {}, [
        ("cuda.device=0.5", "cannot allocate cuda.device=0.5 (policy prefer-single-node): "
                            "this slot is handed out in whole units only"),
        ("rocm.device=1", "cannot allocate rocm.device=1 (policy prefer-single-node): this agent "
                          "offers no 'rocm.device' (it offers cpu, cuda.device, mem)"),
    ]),
    ("vm", "prefer-single-node", {}, [
        ("cpu=2 mem=2g", {"cpu": "0-1", "mem": {0: "2g"}, "distances": {"numa": 3},
                          "nic": "0000:00:03.0"}),
        ("cuda.device=1", "cannot allocate cuda.device=1 (policy prefer-single-node): "
                          "this agent offers no 'cuda.device' (it offers cpu, mem)"),
        ("cpu=2.5", "cannot allocate cpu=2.5 (policy prefer-single-node): "
                    "only 2 free on this agent"),
        ("cpu=0.5", {"cpu": "2", "mem": {}, "distances": {"numa": 3}, "nic": "0000:00:03.0"}),
        ("cpu=0.6", {"cpu": "3", "mem": {}, "distances": {"numa": 3}, "nic": "0000:00:03.0"}),
        # 0.9 left in sum, but no single CPU has 0.75 of it.
        ("cpu=0.75", "cannot allocate cpu=0.75 (policy prefer-single-node): "
                     "no unit has a share of 0.75 free"),
    ]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("machine", "policy", "config", "steps"),
    CASES,
    ids=[f"{m}-{p}-{i}" for i, (m, p, _, _) in enumerate(CASES)],
)
def test_allocation_sequence(
    machine: str,
    policy: str,
    config: dict[str, Any],
    steps: list[tuple[str, Any]],
    roots: dict[str, Path],
) -> None:
    allocator = host(roots, machine, allocation_policy=policy, **config)
    for i, (request, expected) in enumerate(steps):
        before = allocator.free()
        if isinstance(expected, str):
            with pytest.raises(InsufficientResources) as e:
                allocator.allocate(f"k{i}", req(request))
            assert str(e.value) == f"kernel k{i}: {expected}"
            assert allocator.free() == before  # a refusal changes nothing
        else:
            got = allocator.allocate(f"k{i}", req(request))
            assert shown(got) == expected, request
            assert got.slots() == req(request)


@pytest.mark.parametrize(
    ("machine", "config", "capacity"),
    [
        ("server", {}, "cpu=96 cuda.device=8 mem=768g"),
        ("server", {"reserved_mem": "512m"}, "cpu=96 cuda.device=8 mem=767.5g"),
        ("server", {"cuda_slot": "cuda.shares"}, "cpu=96 cuda.shares=8 mem=768g"),
        ("epyc", {}, "cpu=127 cuda.device=4 mem=512g"),  # CPU 127 offline; AMD GPUs not CUDA
        ("workstation", {"cpu": 6.5, "mem": "32g"}, "cpu=6.5 cuda.device=1 mem=32g"),
        ("workstation", {"cpu": 20.0}, "cpu=20 cuda.device=1 mem=64g"),  # overcommitted
        ("vm", {}, "cpu=4 mem=8g"),
    ],
)
def test_capacity_comes_from_the_topology(
    machine: str, config: dict[str, Any], capacity: str, roots: dict[str, Path]
) -> None:
    assert host(roots, machine, **config).capacity().human() == capacity


def test_configured_cpus_keep_the_first_ones_for_the_host(roots: dict[str, Path]) -> None:
    allocator = host(roots, "workstation", cpu=6.5)
    caps = {u.id: u.capacity for u in allocator.units if u.slot == "cpu"}
    assert caps == {"9": Decimal("0.5"), **{str(c): Decimal(1) for c in range(10, 16)}}
    held = allocator.allocate("k", req("cpu=6"))
    assert format_cpulist(int(c) for c in held.parts["cpu"]) == "10-15"


@pytest.mark.parametrize(
    ("total", "count", "caps"),
    [
        ("4", 4, ["1", "1", "1", "1"]),
        ("2.5", 4, ["0", "0.5", "1", "1"]),
        ("8", 3, ["2.668", "2.666", "2.666"]),  # overcommit, the remainder on the first
        ("0.25", 2, ["0", "0.25"]),
    ],
)
def test_cpu_capacities(total: str, count: int, caps: list[str]) -> None:
    got = cpu_capacities(Decimal(total), count)
    assert got == [Decimal(c) for c in caps]
    assert sum(got) == Decimal(total)


def test_split_exact() -> None:
    assert split_exact(Decimal(10), [1, 1, 1], quantum=Decimal(1)) == [4, 3, 3]
    assert split_exact(Decimal(7), [3, 0, 1], quantum=Decimal(1)) == [6, 0, 1]
    assert split_exact(Decimal(5), [0, 0]) == [5, 0]
    assert split_exact(Decimal(5), []) == []


def test_container_resources(roots: dict[str, Path]) -> None:
    allocator = host(roots, "server")
    held = allocator.allocate("k", req("cpu=16 mem=64g cuda.device=2"))
    assert allocator.container(held) == ContainerResources(
        cpuset_cpus=frozenset([*range(8), *range(48, 56)]),
        cpuset_mems=frozenset({0}),
        device_requests=(DeviceRequest("nvidia", ("0", "1"), ("gpu",)),),
        environ={"NVIDIA_VISIBLE_DEVICES": "0,1", "NCCL_IB_HCA": "mlx5_0"},
    )
    other = allocator.allocate("k2", req("cpu=1 cuda.device=1"))
    assert allocator.container(other).environ == {
        "NVIDIA_VISIBLE_DEVICES": "2",  # 0000:3d:00.0, the third in PCI order
        "NCCL_IB_HCA": "mlx5_0",
    }
    assert allocator.container(other).cpuset_mems == {0}  # no memory asked: its CPUs' node
    vm = host(roots, "vm")
    plain = vm.allocate("k", req("cpu=1 mem=1g"))
    assert vm.container(plain) == ContainerResources(frozenset({0}), frozenset({0}))


def test_allocation_json_round_trip(roots: dict[str, Path]) -> None:
    held = host(roots, "server").allocate("k", req("cpu=2.5 mem=3g cuda.device=1"))
    assert Allocation.from_json(held.to_json()) == held
    assert held.to_json()["parts"]["cpu"] == {"0": "1", "48": "1", "1": "0.5"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "allocation: expected an object with 'parts', got []"),
        ({"parts": {"cpu": 3}}, "allocation: parts['cpu'] is not an object: 3"),
        ({"parts": {"cpu": {"0": "-1"}}}, "allocation: parts['cpu']['0'] = '-1'; expected a positive number"),
        ({"parts": {"cpu": {"0": "x"}}}, "allocation: parts['cpu']['0'] = 'x'; expected a positive number"),
        ({"parts": {}, "nodes": ["a"]}, "allocation: bad nodes or distances: invalid literal"),
    ],
)  # fmt: skip
def test_allocation_json_errors(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("(", r"\(")):
        Allocation.from_json(raw)


class _Twin:
    """A third-party plugin that claims a slot another plugin already offers."""

    name = "twin"

    def slots(self, config: AgentConfig) -> list[SlotSpec]:
        return [SlotSpec("cpu", SlotMode.SHARES)]

    def units(self, topology: Any, config: AgentConfig) -> list[Unit]:
        return []

    def container(self, allocation: Allocation, topology: Any) -> ContainerResources:
        return ContainerResources()


class _Stray(_Twin):
    name = "stray"

    def slots(self, config: AgentConfig) -> list[SlotSpec]:
        return [SlotSpec("fpga.device", SlotMode.WHOLE, anchor=True)]

    def units(self, topology: Any, config: AgentConfig) -> list[Unit]:
        return [Unit("tpu.device", "0", 0, ("s000", "n000", "0"), Decimal(1))]


def test_plugin_conflicts_are_config_errors(roots: dict[str, Path]) -> None:
    topology = read_topology(roots["vm"])
    with pytest.raises(ConfigError, match="device plugins 'cpu' and 'twin' both offer slot 'cpu'"):
        Allocator(topology, [*load_device_plugins(), _Twin()], AgentConfig())
    with pytest.raises(ConfigError, match=r"'stray' offers unit '0' of slot 'tpu\.device'"):
        Allocator(topology, [*load_device_plugins(), _Stray()], AgentConfig())


def test_builtin_plugins_are_registered() -> None:
    assert [p.name for p in load_device_plugins()] == ["cpu", "mem", "cuda"]


def test_a_host_without_memory_in_sysfs_offers_the_kernels_count(roots: dict[str, Path]) -> None:
    topology = read_topology(roots["vm"])
    bare = replace(topology, nodes=(replace(topology.nodes[0], mem_total=0),), host_mem=6 * G)
    allocator = Allocator(bare, load_device_plugins(), AgentConfig(reserved_mem="1g"))
    assert allocator.capacity().human() == "cpu=4 mem=5g"


@pytest.mark.parametrize("machine", ["server", "epyc", "workstation", "vm"])
@pytest.mark.parametrize("plugin", load_device_plugins(), ids=lambda p: p.name)
def test_device_plugin_conformance(plugin: Any, machine: str, roots: dict[str, Path]) -> None:
    """What every registered plugin promises, on every machine."""
    topology = read_topology(roots[machine])
    config = AgentConfig(reserved_mem="0")
    slots = {s.name: s for s in plugin.slots(config)}
    assert slots, f"plugin {plugin.name} offers no slot"
    units = list(plugin.units(topology, config))
    assert len({(u.slot, u.id) for u in units}) == len(units)
    for u in units:
        assert u.slot in slots
        assert u.capacity > 0
        assert u.node in {n.id for n in topology.nodes} or u.node == -1
        assert u.key[1] == (f"n{u.node:03d}" if u.node >= 0 else "n?")
        if slots[u.slot].mode != SlotMode.DIVISIBLE:
            assert u.capacity >= 1 or plugin.name == "cpu"
    # An allocation holding none of its units gets nothing from it.
    assert plugin.container(Allocation("prefer-single-node", {}), topology) == ContainerResources()
    # One holding all of them gets every one, and nothing for anybody else.
    every = Allocation(
        "prefer-single-node", {s: {u.id: u.capacity for u in units if u.slot == s} for s in slots}
    )
    given = plugin.container(every, topology)
    if plugin.name == "cpu":
        assert given.cpuset_cpus == {int(u.id) for u in units}
    if plugin.name == "mem":
        assert given.cpuset_mems == {u.node for u in units}
    if plugin.name == "cuda" and units:
        (request,) = given.device_requests
        assert len(request.device_ids) == len(units)
        assert given.environ["NVIDIA_VISIBLE_DEVICES"] == ",".join(request.device_ids)
