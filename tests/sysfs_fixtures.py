"""Generated sysfs trees of four machines, for the hardware readers' tests.

``python -m tests.sysfs_fixtures OUTDIR`` writes all of them under OUTDIR to look at.
Each tree has the files and links the kernel makes (``devices/system/{cpu,node,
memory}``, ``devices/pci*/...`` with ``bus/pci/devices`` links into them,
``class/net``), described by the machine specs at the bottom:

* ``server``: 2 sockets x 24 cores x 2 threads, 2 NUMA nodes, 8 NVIDIA GPUs in
  pairs behind 4 PCIe switches, an InfiniBand HCA behind two of the switches,
  NVMe and Ethernet on root ports, an ASPEED BMC display (not a GPU).
* ``epyc``: 2 sockets x 32 cores x 2 threads in NPS4 mode (4 NUMA nodes per
  socket), 4 NVIDIA GPUs and 2 AMD GPUs on root ports, NVMe, a dual-port
  Ethernet NIC, and CPU 127 offline.
* ``workstation``: one node, 8 cores x 2 threads, one NVIDIA GPU, devices
  whose ``numa_node`` is -1.
* ``vm``: no NUMA directory at all, 4 vCPUs without ``cpu/online``, memory as
  hot-pluggable blocks, virtio devices without link files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backendai.hw.cpulist import format_cpulist

__all__ = ["MACHINES", "Bridge", "Cpu", "Machine", "Pci", "write_all", "write_machine"]

GIB = 1024**3


@dataclass(frozen=True)
class Cpu:
    id: int
    socket: int
    core: int
    node: int
    siblings: tuple[int, ...]
    online: bool = True


@dataclass(frozen=True)
class Pci:
    """A PCI function at the end of *parents* (bridge addresses below the host bridge)."""

    address: str
    host_bridge: str
    parents: tuple[str, ...]
    cls: int
    vendor: int
    device: int
    numa_node: int
    local_cpus: frozenset[int] = frozenset()
    link: tuple[str, int] | None = ("16.0 GT/s PCIe", 16)
    net: tuple[str, ...] = ()
    infiniband: tuple[str, ...] = ()
    nvme: tuple[str, ...] = ()
    virtio: int | None = None  # virtio devices put "net" one level down, in virtioN


@dataclass(frozen=True)
class Bridge:
    address: str
    host_bridge: str
    parents: tuple[str, ...]
    numa_node: int


@dataclass(frozen=True)
class Machine:
    cpus: tuple[Cpu, ...]
    node_mem: dict[int, int]  # node -> bytes; empty: no NUMA directory
    distances: dict[int, tuple[int, ...]] = field(default_factory=dict)
    devices: tuple[Pci, ...] = ()
    bridges: tuple[Bridge, ...] = ()
    cpu_online_file: bool = True
    memory_blocks: tuple[int, int, int] | None = None  # (block size, online, offline)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _write_cpus(root: Path, m: Machine) -> None:
    base = root / "devices/system/cpu"
    online = [c.id for c in m.cpus if c.online]
    offline = [c.id for c in m.cpus if not c.online]
    if m.cpu_online_file:
        _write(base / "online", format_cpulist(online))
        _write(base / "offline", format_cpulist(offline))
    _write(base / "possible", format_cpulist(c.id for c in m.cpus))
    _write(base / "present", format_cpulist(c.id for c in m.cpus))
    _write(base / "kernel_max", "8191")
    for c in m.cpus:
        d = base / f"cpu{c.id}"
        if c.id != 0:  # the boot CPU cannot go offline and has no "online" file
            _write(d / "online", "1" if c.online else "0")
        t = d / "topology"
        _write(t / "core_id", str(c.core))
        _write(t / "physical_package_id", str(c.socket))
        _write(t / "die_id", "0")
        _write(t / "thread_siblings_list", format_cpulist(c.siblings))
        _write(t / "core_cpus_list", format_cpulist(c.siblings))
        package = [x.id for x in m.cpus if x.socket == c.socket]
        _write(t / "package_cpus_list", format_cpulist(package))
        _write(t / "core_siblings_list", format_cpulist(package))


def _write_nodes(root: Path, m: Machine) -> None:
    if not m.node_mem:
        return
    base = root / "devices/system/node"
    ids = sorted(m.node_mem)
    for name in ("online", "possible", "has_memory", "has_normal_memory"):
        _write(base / name, format_cpulist(ids))
    _write(base / "has_cpu", format_cpulist({c.node for c in m.cpus}))
    for n in ids:
        cpus = [c.id for c in m.cpus if c.node == n and c.online]
        kb = m.node_mem[n] // 1024
        _write(base / f"node{n}/cpulist", format_cpulist(cpus))
        _write(
            base / f"node{n}/meminfo",
            f"Node {n} MemTotal:       {kb} kB\n"
            f"Node {n} MemFree:        {kb * 9 // 10} kB\n"
            f"Node {n} MemUsed:        {kb // 10} kB",
        )
        _write(base / f"node{n}/distance", " ".join(str(d) for d in m.distances[n]))


def _write_memory_blocks(root: Path, m: Machine) -> None:
    if m.memory_blocks is None:
        return
    size, online, offline = m.memory_blocks
    base = root / "devices/system/memory"
    _write(base / "block_size_bytes", f"{size:x}")
    for i in range(online + offline):
        _write(base / f"memory{i}/state", "online" if i < online else "offline")
        _write(base / f"memory{i}/online", "1" if i < online else "0")


def _device_dir(root: Path, host_bridge: str, parents: Sequence[str], address: str) -> Path:
    return root.joinpath("devices", host_bridge, *parents, address)


def _link(root: Path, link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _write_pci_common(d: Path, cls: int, vendor: int, device: int, numa: int, cpus: str) -> None:
    _write(d / "class", f"0x{cls:06x}")
    _write(d / "vendor", f"0x{vendor:04x}")
    _write(d / "device", f"0x{device:04x}")
    _write(d / "numa_node", str(numa))
    _write(d / "local_cpulist", cpus)


def _write_pci(root: Path, m: Machine) -> None:
    node_cpus = {n: [c.id for c in m.cpus if c.node == n] for n in {c.node for c in m.cpus}}
    everything = format_cpulist(c.id for c in m.cpus)
    for b in m.bridges:
        d = _device_dir(root, b.host_bridge, b.parents, b.address)
        local = format_cpulist(node_cpus.get(b.numa_node, [])) or everything
        _write_pci_common(d, 0x060400, 0x8086, 0x347A, b.numa_node, local)
        _link(root, root / "bus/pci/devices" / b.address, d)
    for p in m.devices:
        d = _device_dir(root, p.host_bridge, p.parents, p.address)
        cpus = p.local_cpus or frozenset(node_cpus.get(p.numa_node, []))
        _write_pci_common(
            d, p.cls, p.vendor, p.device, p.numa_node, format_cpulist(cpus) or everything
        )
        if p.link is not None:
            _write(d / "current_link_speed", p.link[0])
            _write(d / "current_link_width", str(p.link[1]))
        net_parent = d / f"virtio{p.virtio}" if p.virtio is not None else d
        for name in p.net:
            _write(net_parent / "net" / name / "address", "02:00:00:00:00:01")
            _link(root, root / "class/net" / name, net_parent / "net" / name)
        for name in p.infiniband:
            _write(d / "infiniband" / name / "node_type", "1: CA")
        for name in p.nvme:
            _write(d / "nvme" / name / "model", "Fixture NVMe")
        _link(root, root / "bus/pci/devices" / p.address, d)


def write_machine(root: Path, machine: Machine) -> Path:
    """Write *machine*'s sysfs tree under *root* (which becomes its /sys); return *root*."""
    _write_cpus(root, machine)
    _write_nodes(root, machine)
    _write_memory_blocks(root, machine)
    _write_pci(root, machine)
    return root


# -- the machines ---------------------------------------------------------------


def _smt_cpus(sockets: int, cores: int, nodes_per_socket: int) -> tuple[Cpu, ...]:
    """Linux numbering: first threads of every socket, then the second threads."""
    total = sockets * cores
    out = []
    for thread in (0, 1):
        for s in range(sockets):
            for core in range(cores):
                first = s * cores + core
                node = s * nodes_per_socket + core // (cores // nodes_per_socket)
                cid = first + thread * total
                out.append(Cpu(cid, s, core, node, (first, first + total)))
    return tuple(sorted(out, key=lambda c: c.id))


NVIDIA, AMD, MELLANOX, INTEL = 0x10DE, 0x1002, 0x15B3, 0x8086
SAMSUNG, BROADCOM, ASPEED, VIRTIO = 0x144D, 0x14E4, 0x1A03, 0x1AF4
GPU_3D, GPU_VGA, GPU_OTHER = 0x030200, 0x030000, 0x038000
IB, ETH, NVME, STORAGE = 0x020700, 0x020000, 0x010802, 0x010000


def _server() -> Machine:
    devices: list[Pci] = []
    bridges: list[Bridge] = []
    # (host bridge, root port, switch upstream, downstream ports, node)
    switches = [
        ("pci0000:17", "0000:17:00.0", "0000:18:00.0", "0000:19", 0),
        ("pci0000:3a", "0000:3a:00.0", "0000:3b:00.0", "0000:3c", 0),
        ("pci0000:85", "0000:85:00.0", "0000:86:00.0", "0000:87", 1),
        ("pci0000:ae", "0000:ae:00.0", "0000:af:00.0", "0000:b0", 1),
    ]
    for i, (hb, rp, up, down, node) in enumerate(switches):
        bus = int(down[-2:], 16)
        bridges.append(Bridge(rp, hb, (), node))
        bridges.append(Bridge(up, hb, (rp,), node))
        for port in (0, 1, 2) if i in (0, 2) else (0, 1):
            dp = f"{down}:{port * 4:02x}.0"
            bridges.append(Bridge(dp, hb, (rp, up), node))
            addr = f"0000:{bus + 1 + port:02x}:00.0"
            if port < 2:
                devices.append(Pci(addr, hb, (rp, up, dp), GPU_3D, NVIDIA, 0x20B0, node))
            else:
                ib = f"mlx5_{node}"
                devices.append(
                    Pci(addr, hb, (rp, up, dp), IB, MELLANOX, 0x101B, node, infiniband=(ib,))
                )
    bridges += [
        Bridge("0000:5d:00.0", "pci0000:5d", (), 0),
        Bridge("0000:00:1c.0", "pci0000:00", (), 0),
        Bridge("0000:00:1c.5", "pci0000:00", (), 0),
    ]
    devices += [
        Pci("0000:5e:00.0", "pci0000:5d", ("0000:5d:00.0",), NVME, SAMSUNG, 0xA80A, 0,
            link=("8.0 GT/s PCIe", 4), nvme=("nvme0",)),
        Pci("0000:01:00.0", "pci0000:00", ("0000:00:1c.0",), ETH, INTEL, 0x1572, 0,
            link=("8.0 GT/s PCIe", 8), net=("eno1",)),
        Pci("0000:02:00.0", "pci0000:00", ("0000:00:1c.5",), GPU_VGA, ASPEED, 0x2000, 0,
            link=("2.5 GT/s PCIe", 1)),
    ]  # fmt: skip
    return Machine(
        cpus=_smt_cpus(2, 24, 1),
        node_mem={0: 384 * GIB, 1: 384 * GIB},
        distances={0: (10, 21), 1: (21, 10)},
        devices=tuple(devices),
        bridges=tuple(bridges),
    )


def _epyc() -> Machine:
    cpus = list(_smt_cpus(2, 32, 4))
    cpus[127] = Cpu(127, 1, 31, 7, (63, 127), online=False)
    distances = {
        n: tuple(10 if m == n else 12 if m // 4 == n // 4 else 32 for m in range(8))
        for n in range(8)
    }
    root_ports = {
        n: (f"pci0000:{0x10 * (n + 1):02x}", f"0000:{0x10 * (n + 1):02x}:01.1") for n in range(8)
    }
    devices: list[Pci] = []
    bridges = [Bridge(rp, hb, (), n) for n, (hb, rp) in root_ports.items()]
    for n, (vendor, dev, cls) in {
        1: (NVIDIA, 0x2331, GPU_3D),
        3: (NVIDIA, 0x2331, GPU_3D),
        5: (NVIDIA, 0x2331, GPU_3D),
        7: (NVIDIA, 0x2331, GPU_3D),
        0: (AMD, 0x740F, GPU_OTHER),
        4: (AMD, 0x740F, GPU_OTHER),
    }.items():
        hb, rp = root_ports[n]
        devices.append(Pci(f"0000:{0x10 * (n + 1) + 1:02x}:00.0", hb, (rp,), cls, vendor, dev, n,
                           link=("32.0 GT/s PCIe", 16)))  # fmt: skip
    for n, name in ((2, "nvme0"), (6, "nvme1")):
        hb, rp = root_ports[n]
        devices.append(Pci(f"0000:{0x10 * (n + 1) + 1:02x}:00.0", hb, (rp,), NVME, SAMSUNG, 0xA80A,
                           n, link=("16.0 GT/s PCIe", 4), nvme=(name,)))  # fmt: skip
    hb, rp = root_ports[0][0], "0000:10:03.1"
    bridges.append(Bridge(rp, hb, (), 0))
    for fn, name in ((0, "ens1f0np0"), (1, "ens1f1np1")):
        devices.append(Pci(f"0000:12:00.{fn}", hb, (rp,), ETH, BROADCOM, 0x16D7, 0,
                           link=("8.0 GT/s PCIe", 8), net=(name,)))  # fmt: skip
    return Machine(
        cpus=tuple(cpus),
        node_mem=dict.fromkeys(range(8), 64 * GIB),
        distances=distances,
        devices=tuple(devices),
        bridges=tuple(bridges),
    )


def _workstation() -> Machine:
    cpus = tuple(Cpu(i, 0, i % 8, 0, (i % 8, i % 8 + 8)) for i in range(16))
    hb = "pci0000:00"
    return Machine(
        cpus=cpus,
        node_mem={0: 64 * GIB},
        distances={0: (10,)},
        bridges=tuple(Bridge(rp, hb, (), -1) for rp in ("0000:00:01.0", "0000:00:1b.0", "0000:00:1c.0")),
        devices=(
            Pci("0000:01:00.0", hb, ("0000:00:01.0",), GPU_VGA, NVIDIA, 0x2684, -1),
            Pci("0000:02:00.0", hb, ("0000:00:1b.0",), NVME, SAMSUNG, 0xA80A, -1,
                link=("16.0 GT/s PCIe", 4), nvme=("nvme0",)),
            Pci("0000:03:00.0", hb, ("0000:00:1c.0",), ETH, INTEL, 0x15F3, -1,
                link=("5.0 GT/s PCIe", 1), net=("enp3s0",)),
        ),
    )  # fmt: skip


def _vm() -> Machine:
    hb = "pci0000:00"
    return Machine(
        cpus=tuple(Cpu(i, 0, i, 0, (i,)) for i in range(4)),
        node_mem={},
        cpu_online_file=False,
        memory_blocks=(128 * 1024**2, 64, 2),
        devices=(
            Pci("0000:00:03.0", hb, (), ETH, VIRTIO, 0x1041, -1, link=None, net=("eth0",), virtio=1),
            Pci("0000:00:04.0", hb, (), STORAGE, VIRTIO, 0x1042, -1, link=None),
        ),
    )  # fmt: skip


MACHINES: dict[str, Callable[[], Machine]] = {
    "server": _server,
    "epyc": _epyc,
    "workstation": _workstation,
    "vm": _vm,
}


def write_all(base: Path) -> dict[str, Path]:
    """Every machine under *base*/<name>; name -> its sysfs root."""
    return {name: write_machine(base / name, make()) for name, make in MACHINES.items()}


if __name__ == "__main__":
    for root in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "sysfs-fixtures")).values():
        sys.stdout.write(f"{root}\n")
