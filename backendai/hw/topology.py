"""The hardware layout of one host, as frozen values: NUMA nodes, CPUs, PCI devices.

Built by :func:`backendai.hw.sysfs.read_topology` (or by hand in tests); pure
afterwards.  ``summary()`` is the JSON an agent puts in its heartbeat and the
manager shows to operators.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .cpulist import format_cpulist

__all__ = ["CPU", "DeviceKind", "NumaNode", "PCIDevice", "Topology"]


class DeviceKind(StrEnum):
    GPU = "gpu"
    NIC = "nic"
    NVME = "nvme"


@dataclass(frozen=True)
class CPU:
    """One online logical CPU (a hardware thread)."""

    id: int
    core: int  # core_id: unique within its socket, not across sockets
    socket: int  # physical_package_id; -1 where the kernel does not say
    node: int  # NUMA node
    siblings: frozenset[int]  # hardware threads of the same core, itself included


@dataclass(frozen=True)
class NumaNode:
    id: int
    cpus: frozenset[int]  # its online CPUs (empty for a memory-only node)
    mem_total: int  # bytes
    socket: int  # the socket of its CPUs; -1 for a memory-only node
    distances: Mapping[int, int] = field(default_factory=dict)  # node id -> SLIT (10 = local)


@dataclass(frozen=True)
class PCIDevice:
    """A GPU, NIC or NVMe controller, and where it sits in the PCIe tree."""

    address: str  # "0000:1b:00.0"
    kind: DeviceKind
    vendor: str  # "nvidia", "amd", "mellanox", ... or the id in hex
    vendor_id: int
    device_id: int
    class_code: int
    subkind: str  # NIC: "ethernet" | "infiniband"; else ""
    node: int  # NUMA node; -1 unknown
    local_cpus: frozenset[int]
    link_speed: str  # "16.0 GT/s PCIe" as sysfs says it; "" unknown
    link_width: int  # lanes; 0 unknown
    host_bridge: str  # "pci0000:17"
    path: tuple[str, ...]  # bridges from the root port down to its parent bridge
    names: tuple[str, ...] = ()  # "eth0", "mlx5_0", "nvme0"

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.names[0] if self.names else self.address}"


@dataclass(frozen=True)
class Topology:
    nodes: tuple[NumaNode, ...]
    cpus: tuple[CPU, ...]  # online CPUs, by id
    devices: tuple[PCIDevice, ...]  # classified PCI functions, by address
    offline_cpus: frozenset[int] = frozenset()
    numa: bool = True  # False: the kernel shows no NUMA; one node was assumed
    warnings: tuple[str, ...] = ()  # odd files met while reading, for the operator
    # MemTotal of /proc/meminfo (0: unknown).  Nodes' sizes may not add up to it (memory
    # a hypervisor adds or balloons): it is then shared out in proportion to them.
    host_mem: int = 0

    def node(self, node_id: int) -> NumaNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def socket_of(self, node_id: int) -> int:
        found = self.node(node_id)
        return -1 if found is None else found.socket

    @property
    def mem_total(self) -> int:
        """What the nodes hold, as sysfs says."""
        return sum(n.mem_total for n in self.nodes)

    @property
    def usable_mem(self) -> int:
        """The host's memory: MemTotal where known, else what the nodes hold."""
        return self.host_mem or self.mem_total

    @property
    def sockets(self) -> frozenset[int]:
        return frozenset(c.socket for c in self.cpus)

    def of_kind(self, kind: DeviceKind) -> tuple[PCIDevice, ...]:
        return tuple(d for d in self.devices if d.kind == kind)

    def summary(self) -> dict[str, Any]:
        """A compact JSON description (the heartbeat's ``hardware``)."""
        cores = {(c.socket, c.core) for c in self.cpus}
        counts: dict[str, int] = {}
        for d in self.devices:
            counts[d.kind.value] = counts.get(d.kind.value, 0) + 1
        return {
            "numa": self.numa,
            "sockets": len(self.sockets),
            "cores": len(cores),
            "cpus": format_cpulist(c.id for c in self.cpus),
            "offline_cpus": format_cpulist(self.offline_cpus),
            "mem": self.usable_mem,
            "nodes": [
                {
                    "id": n.id,
                    "socket": n.socket,
                    "cpus": format_cpulist(n.cpus),
                    "mem": n.mem_total,
                    "distances": [n.distances.get(m.id, 0) for m in self.nodes],
                }
                for n in self.nodes
            ],
            "counts": counts,
            "devices": [_device_json(d) for d in self.devices],
            "warnings": list(self.warnings),
        }


def _device_json(d: PCIDevice) -> dict[str, Any]:
    link = " ".join(p for p in (d.link_speed, f"x{d.link_width}" if d.link_width else "") if p)
    return {
        "address": d.address,
        "kind": d.kind.value,
        "subkind": d.subkind,
        "vendor": d.vendor,
        "device_id": f"0x{d.device_id:04x}",
        "node": d.node,
        "link": link,
        "path": [d.host_bridge, *d.path],
        "names": list(d.names),
    }
