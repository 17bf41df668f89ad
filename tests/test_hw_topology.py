"""Hardware topology from sysfs: generated machines, odd files, and this host's real /sys."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import psutil
import pytest

from backendai.hw import (
    DeviceKind,
    Topology,
    format_cpulist,
    load_topology,
    parse_cpulist,
    read_topology,
)
from backendai.hw.locality import Distance, device_key, key_distance, node_span
from backendai.hw.pci import classify
from tests.sysfs_fixtures import GIB, write_all


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_all(tmp_path_factory.mktemp("sysfs"))


@pytest.mark.parametrize(
    ("text", "ids", "canonical"),
    [
        ("0-3,8", {0, 1, 2, 3, 8}, "0-3,8"),
        ("0", {0}, "0"),
        ("", set(), ""),
        ("  5,1-2 \n", {1, 2, 5}, "1-2,5"),
        ("0-1,2-3,7,6", {0, 1, 2, 3, 6, 7}, "0-3,6-7"),
        ("127", {127}, "127"),
    ],
)
def test_cpulist(text: str, ids: set[int], canonical: str) -> None:
    assert parse_cpulist(text) == ids
    assert format_cpulist(ids) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a-b", "cpulist: 'a-b' is not a CPU list; expected e.g. '0-3,8'"),
        ("3-1", "cpulist: bad range '3-1' in '3-1'"),
        ("1,,2", "cpulist: '1,,2' is not a CPU list"),
        ("-1", "cpulist: '-1' is not a CPU list"),
    ],
)
def test_cpulist_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        parse_cpulist(text)


@pytest.mark.parametrize(
    ("cls", "vendor", "expected"),
    [
        (0x030200, 0x10DE, (DeviceKind.GPU, "")),  # NVIDIA 3D controller
        (0x030000, 0x10DE, (DeviceKind.GPU, "")),  # NVIDIA VGA (workstation card)
        (0x038000, 0x1002, (DeviceKind.GPU, "")),  # AMD Instinct (display, other)
        (0x120000, 0x1002, (DeviceKind.GPU, "")),  # AMD accelerator class
        (0x030000, 0x1A03, None),  # ASPEED BMC display: not a GPU
        (0x030000, 0x8086, None),  # Intel integrated graphics: not offered
        (0x020000, 0x8086, (DeviceKind.NIC, "ethernet")),
        (0x020700, 0x15B3, (DeviceKind.NIC, "infiniband")),
        (0x028000, 0x8086, (DeviceKind.NIC, "other")),  # Wi-Fi
        (0x010802, 0x144D, (DeviceKind.NVME, "")),
        (0x010000, 0x1AF4, None),  # virtio block: SCSI class, not NVMe
        (0x060400, 0x8086, None),  # a bridge
    ],
)
def test_classification(cls: int, vendor: int, expected: Any) -> None:
    assert classify(cls, vendor) == expected


# What each generated machine must read as: the layout, the devices and their places.
EXPECTED: dict[str, dict[str, Any]] = {
    "server": {
        "numa": True,
        "sockets": 2,
        "cores": 48,
        "cpus": "0-95",
        "offline_cpus": "",
        "nodes": [(0, 0, "0-23,48-71", 384 * GIB, [10, 21]), (1, 1, "24-47,72-95", 384 * GIB, [21, 10])],
        "counts": {"gpu": 8, "nic": 3, "nvme": 1},
        "devices": {
            "0000:1a:00.0": ("gpu", "", "nvidia", 0, "16.0 GT/s PCIe x16",
                             ["pci0000:17", "0000:17:00.0", "0000:18:00.0", "0000:19:00.0"], []),
            "0000:b2:00.0": ("gpu", "", "nvidia", 1, "16.0 GT/s PCIe x16",
                             ["pci0000:ae", "0000:ae:00.0", "0000:af:00.0", "0000:b0:04.0"], []),
            "0000:1c:00.0": ("nic", "infiniband", "mellanox", 0, "16.0 GT/s PCIe x16",
                             ["pci0000:17", "0000:17:00.0", "0000:18:00.0", "0000:19:08.0"],
                             ["mlx5_0"]),
            "0000:01:00.0": ("nic", "ethernet", "intel", 0, "8.0 GT/s PCIe x8",
                             ["pci0000:00", "0000:00:1c.0"], ["eno1"]),
            "0000:5e:00.0": ("nvme", "", "samsung", 0, "8.0 GT/s PCIe x4",
                             ["pci0000:5d", "0000:5d:00.0"], ["nvme0"]),
        },
    },
    "epyc": {
        "numa": True,
        "sockets": 2,
        "cores": 64,
        "cpus": "0-126",
        "offline_cpus": "127",
        "nodes": [
            (0, 0, "0-7,64-71", 64 * GIB, [10, 12, 12, 12, 32, 32, 32, 32]),
            (3, 0, "24-31,88-95", 64 * GIB, [12, 12, 12, 10, 32, 32, 32, 32]),
            (7, 1, "56-63,120-126", 64 * GIB, [32, 32, 32, 32, 12, 12, 12, 10]),
        ],
        "counts": {"gpu": 6, "nic": 2, "nvme": 2},
        "devices": {
            "0000:11:00.0": ("gpu", "", "amd", 0, "32.0 GT/s PCIe x16",
                             ["pci0000:10", "0000:10:01.1"], []),
            "0000:81:00.0": ("gpu", "", "nvidia", 7, "32.0 GT/s PCIe x16",
                             ["pci0000:80", "0000:80:01.1"], []),
            "0000:12:00.1": ("nic", "ethernet", "broadcom", 0, "8.0 GT/s PCIe x8",
                             ["pci0000:10", "0000:10:03.1"], ["ens1f1np1"]),
            "0000:71:00.0": ("nvme", "", "samsung", 6, "16.0 GT/s PCIe x4",
                             ["pci0000:70", "0000:70:01.1"], ["nvme1"]),
        },
    },
    "workstation": {
        "numa": True,
        "sockets": 1,
        "cores": 8,
        "cpus": "0-15",
        "offline_cpus": "",
        "nodes": [(0, 0, "0-15", 64 * GIB, [10])],
        "counts": {"gpu": 1, "nic": 1, "nvme": 1},
        "devices": {
            # numa_node is -1 on this board: one node, so node 0.
            "0000:01:00.0": ("gpu", "", "nvidia", 0, "16.0 GT/s PCIe x16",
                             ["pci0000:00", "0000:00:01.0"], []),
            "0000:03:00.0": ("nic", "ethernet", "intel", 0, "5.0 GT/s PCIe x1",
                             ["pci0000:00", "0000:00:1c.0"], ["enp3s0"]),
        },
    },
    "vm": {
        "numa": False,
        "sockets": 1,
        "cores": 4,
        "cpus": "0-3",
        "offline_cpus": "",
        # No NUMA directory: one node assumed, memory from the 64 online 128 MiB blocks.
        "nodes": [(0, 0, "0-3", 8 * GIB, [10])],
        "counts": {"nic": 1},
        "devices": {
            "0000:00:03.0": ("nic", "ethernet", "virtio", 0, "", ["pci0000:00"], ["eth0"]),
        },
    },
}  # fmt: skip


@pytest.mark.parametrize("machine", sorted(EXPECTED))
def test_detected_layout(machine: str, roots: dict[str, Path]) -> None:
    want = EXPECTED[machine]
    topology = read_topology(roots[machine])
    summary = json.loads(json.dumps(topology.summary()))  # what the heartbeat carries
    for key in ("numa", "sockets", "cores", "cpus", "offline_cpus", "counts"):
        assert summary[key] == want[key], key
    nodes = {n["id"]: n for n in summary["nodes"]}
    for node_id, socket, cpus, mem, distances in want["nodes"]:
        assert (nodes[node_id]["socket"], nodes[node_id]["cpus"]) == (socket, cpus)
        assert (nodes[node_id]["mem"], nodes[node_id]["distances"]) == (mem, distances)
    devices = {d["address"]: d for d in summary["devices"]}
    for address, (kind, subkind, vendor, node, link, path, names) in want["devices"].items():
        d = devices[address]
        assert (d["kind"], d["subkind"], d["vendor"], d["node"]) == (kind, subkind, vendor, node)
        assert (d["link"], d["path"], d["names"]) == (link, path, names)
    assert summary["warnings"] == []
    assert summary["mem"] == sum(n["mem"] for n in summary["nodes"])


def test_cpu_siblings_and_offline(roots: dict[str, Path]) -> None:
    epyc = read_topology(roots["epyc"])
    by_id = {c.id: c for c in epyc.cpus}
    assert 127 not in by_id  # offline: never offered
    assert epyc.offline_cpus == {127}
    assert by_id[63].siblings == {63}  # its sibling 127 is offline
    assert by_id[0].siblings == {0, 64}
    assert (by_id[40].socket, by_id[40].node, by_id[40].core) == (1, 5, 8)
    vm = read_topology(roots["vm"])
    assert [c.id for c in vm.cpus] == [0, 1, 2, 3]  # online from each cpuN/online


@pytest.mark.parametrize(
    ("machine", "a", "b", "distance"),
    [
        ("server", "0000:1a:00.0", "0000:1b:00.0", Distance.SAME_SWITCH),
        ("server", "0000:1a:00.0", "0000:1c:00.0", Distance.SAME_SWITCH),  # GPU and its HCA
        ("server", "0000:1a:00.0", "0000:3d:00.0", Distance.SAME_NODE),
        ("server", "0000:1a:00.0", "0000:5e:00.0", Distance.SAME_NODE),
        ("server", "0000:1a:00.0", "0000:88:00.0", Distance.CROSS_SOCKET),
        ("epyc", "0000:21:00.0", "0000:41:00.0", Distance.SAME_SOCKET),
        ("epyc", "0000:21:00.0", "0000:61:00.0", Distance.CROSS_SOCKET),
        ("epyc", "0000:12:00.0", "0000:12:00.1", Distance.SAME_ROOT_PORT),
        ("epyc", "0000:11:00.0", "0000:12:00.0", Distance.SAME_NODE),
        ("epyc", "0000:21:00.0", "0000:21:00.0", Distance.SAME_DEVICE),
    ],
)
def test_pcie_distance(
    machine: str, a: str, b: str, distance: Distance, roots: dict[str, Path]
) -> None:
    topology = read_topology(roots[machine])
    dev = {d.address: d for d in topology.devices}
    assert key_distance([device_key(dev[a], topology), device_key(dev[b], topology)]) == distance


def test_node_span(roots: dict[str, Path]) -> None:
    epyc = read_topology(roots["epyc"])
    assert node_span([2], epyc) == Distance.SAME_NODE
    assert node_span([0, 3], epyc) == Distance.SAME_SOCKET
    assert node_span([3, 4], epyc) == Distance.CROSS_SOCKET
    assert node_span([0, -1], epyc) == Distance.CROSS_SOCKET  # an unknown node: the worst


def _copy(roots: dict[str, Path], machine: str, dest: Path) -> Path:
    shutil.copytree(roots[machine], dest, symlinks=True)
    return dest


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_numa_node_minus_one_is_resolved_from_local_cpus(
    roots: dict[str, Path], tmp_path: Path
) -> None:
    root = _copy(roots, "server", tmp_path / "sys")
    gpu = root / "bus/pci/devices/0000:88:00.0"
    _write(gpu / "numa_node", "-1\n")  # firmware did not say; its local CPUs are node 1's
    nic = root / "bus/pci/devices/0000:1c:00.0"
    _write(nic / "numa_node", "-1\n")
    _write(nic / "local_cpulist", "0-95\n")  # spans both nodes: unknown
    topology = read_topology(root)
    dev = {d.address: d for d in topology.devices}
    assert dev["0000:88:00.0"].node == 1
    assert dev["0000:1c:00.0"].node == -1
    assert topology.warnings == (
        "/sys/bus/pci/devices/0000:1c:00.0: NUMA node unknown (numa_node -1, local CPUs span nodes)",
    )
    # Unknown placement is the worst distance, never a crash.
    key = device_key(dev["0000:1c:00.0"], topology)
    assert key_distance([key, device_key(dev["0000:1a:00.0"], topology)]) == Distance.CROSS_SOCKET


@pytest.mark.parametrize(
    ("edit", "warning", "check"),
    [
        (
            ("devices/system/cpu/cpu5/topology/core_id", "five"),
            "/sys/devices/system/cpu/cpu5/topology/core_id: 'five' is not an integer; ignored",
            lambda t: next(c for c in t.cpus if c.id == 5).core == 5,
        ),
        (
            ("devices/system/node/node1/meminfo", "garbage"),
            "/sys/devices/system/node/node1/meminfo: no MemTotal line; node memory taken as 0",
            lambda t: t.node(1).mem_total == 0,
        ),
        (
            ("devices/system/node/node0/distance", "10"),
            "/sys/devices/system/node/node0/distance: '10' does not give one distance per node [0, 1]; ignored",
            lambda t: t.node(0).distances == {},
        ),
        (
            ("devices/system/node/node1/cpulist", "24-47"),  # 72-95 on no node
            "/sys/devices/system/node: CPUs [72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95] are on no node; counted on node 0",
            lambda t: len(t.node(0).cpus) == 72,
        ),
        (
            ("devices/system/cpu/online", "0-3,x"),
            "/sys/devices/system/cpu/online: '0-3,x' is not a CPU list; expected e.g. '0-3,8'; ignored",
            lambda t: len(t.cpus) == 96,  # fell back to each cpuN/online
        ),
        (
            ("bus/pci/devices/0000:1a:00.0/current_link_width", "wide"),
            "/sys/bus/pci/devices/0000:1a:00.0/current_link_width: 'wide' is not an integer; ignored",
            lambda t: next(d for d in t.devices if d.address == "0000:1a:00.0").link_width == 0,
        ),
    ],
)
def test_odd_files_are_warned_not_fatal(
    edit: tuple[str, str], warning: str, check: Any, roots: dict[str, Path], tmp_path: Path
) -> None:
    root = _copy(roots, "server", tmp_path / "sys")
    _write(root / edit[0], edit[1])
    topology = read_topology(root)
    assert topology.warnings == (warning,)
    assert check(topology)


def test_missing_files_have_defaults(roots: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(roots, "workstation", tmp_path / "sys")
    (root / "devices/system/cpu/cpu3/topology/thread_siblings_list").unlink()
    (root / "devices/system/cpu/cpu3/topology/core_cpus_list").unlink()
    (root / "devices/system/cpu/cpu3/topology/physical_package_id").unlink()
    (root / "bus/pci/devices/0000:01:00.0/current_link_speed").unlink()
    (root / "bus/pci/devices/0000:03:00.0/local_cpulist").unlink()
    (root / "devices/system/cpu/cpu9/online").write_text("0\n")
    (root / "devices/system/cpu/online").unlink()
    (root / "devices/system/cpu/offline").unlink()
    topology = read_topology(root)
    cpu3 = next(c for c in topology.cpus if c.id == 3)
    assert (cpu3.siblings, cpu3.socket) == (frozenset({3}), -1)
    assert 9 not in {c.id for c in topology.cpus}
    assert topology.offline_cpus == {9}
    gpu, nic = (
        next(d for d in topology.devices if d.address == a)
        for a in ("0000:01:00.0", "0000:03:00.0")
    )
    assert (gpu.link_speed, gpu.link_width) == ("", 16)
    assert nic.local_cpus == topology.nodes[0].cpus  # the node's CPUs
    assert topology.warnings == ()


def test_an_empty_root_reads_as_a_minimal_host(tmp_path: Path) -> None:
    topology = read_topology(tmp_path)
    assert [c.id for c in topology.cpus] == [0]
    assert topology.numa is False
    assert topology.devices == ()
    assert topology.warnings == (
        "/sys/devices/system/cpu: no online CPU found; assuming cpu0",
        "/sys/devices/system/memory/block_size_bytes: missing; memory size unknown here",
    )


def test_this_hosts_real_sys() -> None:
    """The real /sys (a VM with one node and virtio devices here) reads without error."""
    topology = read_topology("/sys")
    assert isinstance(topology, Topology)
    online = parse_cpulist(Path("/sys/devices/system/cpu/online").read_text())
    assert {c.id for c in topology.cpus} == online
    assert len(topology.nodes) >= 1
    assert {c for n in topology.nodes for c in n.cpus} == online
    assert topology.mem_total > 0
    assert os.cpu_count() == len(online) + len(topology.offline_cpus)
    summary = topology.summary()
    assert json.loads(json.dumps(summary)) == summary
    for device in topology.devices:
        assert device.node in {n.id for n in topology.nodes} or device.node == -1
        assert device.host_bridge.startswith("pci")


async def test_load_topology_adds_the_hosts_memory(roots: dict[str, Path]) -> None:
    topology = await load_topology("/sys")
    assert topology.host_mem == psutil.virtual_memory().total
    assert topology.summary()["mem"] == topology.host_mem
    # Another tree is not this host: /proc/meminfo does not describe it.
    generated = await load_topology(roots["server"])
    assert generated.host_mem == 0
    assert generated.summary()["mem"] == 768 * GIB
