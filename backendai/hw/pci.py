"""GPUs, NICs and NVMe controllers from ``/sys/bus/pci/devices``, with their PCIe path.

Each entry there links to the device's place in ``/sys/devices``:
``pci0000:17/0000:17:02.0/0000:18:00.0/0000:19:08.0/0000:1b:00.0`` is a device
under host bridge ``pci0000:17``, root port ``0000:17:02.0`` and the switch
ports ``0000:18:00.0`` (upstream) and ``0000:19:08.0`` (downstream).  That
chain of bridges is the device's ``path``; two devices that share a bridge
below the root port sit under the same PCIe switch.

A device's NUMA node comes from ``numa_node``; where that is -1 (firmware did
not say) it is taken from ``local_cpulist`` when those CPUs lie on one node.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from .sysfs import SysfsReader
from .topology import DeviceKind, PCIDevice

__all__ = ["PCI_DIR", "VENDORS", "classify", "read_pci_devices"]

PCI_DIR = "bus/pci/devices"
_ADDRESS_RE = re.compile(r"^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
VENDORS: Mapping[int, str] = {
    0x10DE: "nvidia",
    0x1002: "amd",
    0x1022: "amd",
    0x8086: "intel",
    0x15B3: "mellanox",
    0x14E4: "broadcom",
    0x1077: "qlogic",
    0x1924: "solarflare",
    0x1D0F: "amazon",
    0x1AF4: "virtio",
    0x15AD: "vmware",
    0x144D: "samsung",
    0x1344: "micron",
    0x1C5C: "sk-hynix",
    0x1E0F: "kioxia",
    0x1A03: "aspeed",
}
_GPU_VENDORS = {0x10DE, 0x1002}


def classify(class_code: int, vendor_id: int) -> tuple[DeviceKind, str] | None:
    """(kind, subkind) for a PCI class code such as 0x030200, or None when not ours."""
    base, sub = class_code >> 16, (class_code >> 8) & 0xFF
    if vendor_id in _GPU_VENDORS and (base == 0x03 or base == 0x12):
        return DeviceKind.GPU, ""  # display (VGA, 3D, other) or processing accelerator
    if base == 0x02:
        subkind = {0x00: "ethernet", 0x07: "infiniband"}.get(sub, "other")
        return DeviceKind.NIC, subkind
    if base == 0x01 and sub == 0x08:
        return DeviceKind.NVME, ""
    return None


def _child_names(r: SysfsReader, dev_dir: str, kind: DeviceKind) -> tuple[list[str], bool]:
    """Interface names under the device (``net/eth0``; virtio puts them one level down)."""
    names: list[str] = []
    has_ib = False
    if kind == DeviceKind.NIC:
        names += r.entries(f"{dev_dir}/net")
        for child in r.entries(dev_dir, "virtio"):
            names += r.entries(f"{dev_dir}/{child}/net")
        ib = r.entries(f"{dev_dir}/infiniband")
        has_ib = bool(ib)
        names = ib + names  # an RDMA device's verbs name (mlx5_0) first
    elif kind == DeviceKind.NVME:
        names += r.entries(f"{dev_dir}/nvme")
    return names, has_ib


def _place(r: SysfsReader, address: str) -> tuple[str, tuple[str, ...]]:
    """(host bridge, bridges from the root port down) from the device's real sysfs path."""
    link = r.path(f"{PCI_DIR}/{address}")
    real = os.path.realpath(link)
    devices_dir = os.path.realpath(r.path("devices"))
    rel = os.path.relpath(real, devices_dir)
    parts = rel.split(os.sep)
    if rel.startswith("..") or not parts[0].startswith("pci"):
        r.warn(f"/sys/{PCI_DIR}/{address}: links to {real}, outside /sys/devices/pci*; no path")
        return "", ()
    bridges = tuple(p for p in parts[1:-1] if _ADDRESS_RE.match(p))
    return parts[0], bridges


def _node_from_cpus(local: frozenset[int], node_cpus: Mapping[int, frozenset[int]]) -> int:
    homes = {n for n, cpus in node_cpus.items() if local & cpus}
    return homes.pop() if len(homes) == 1 else -1


def read_pci_devices(
    r: SysfsReader, node_cpus: Mapping[int, frozenset[int]]
) -> tuple[PCIDevice, ...]:
    """The classified PCI functions, by address.  *node_cpus*: node id -> its CPUs."""
    out = []
    single_node = next(iter(node_cpus)) if len(node_cpus) == 1 else None
    for address in r.entries(PCI_DIR):
        if not _ADDRESS_RE.match(address):
            continue
        d = f"{PCI_DIR}/{address}"
        class_code = r.integer(f"{d}/class", base=16)
        vendor_id = r.integer(f"{d}/vendor", base=16)
        if class_code is None or vendor_id is None:
            continue
        found = classify(class_code, vendor_id)
        if found is None:
            continue
        kind, subkind = found
        names, has_ib = _child_names(r, d, kind)
        if has_ib:
            subkind = "infiniband"
        local = r.cpulist(f"{d}/local_cpulist") or frozenset()
        node = r.integer(f"{d}/numa_node")
        if node is None or node < 0 or node not in node_cpus:
            node = single_node if single_node is not None else _node_from_cpus(local, node_cpus)
            if node < 0:
                r.warn(f"/sys/{d}: NUMA node unknown (numa_node -1, local CPUs span nodes)")
        if not local and node >= 0:
            local = node_cpus[node]
        host_bridge, path = _place(r, address)
        speed = r.text(f"{d}/current_link_speed") or ""
        out.append(
            PCIDevice(
                address=address,
                kind=kind,
                vendor=VENDORS.get(vendor_id, f"0x{vendor_id:04x}"),
                vendor_id=vendor_id,
                device_id=r.integer(f"{d}/device", base=16) or 0,
                class_code=class_code,
                subkind=subkind,
                node=node,
                local_cpus=local,
                link_speed="" if speed.lower().startswith("unknown") else speed,
                link_width=r.integer(f"{d}/current_link_width") or 0,
                host_bridge=host_bridge,
                path=path,
                names=tuple(names),
            )
        )
    return tuple(out)
