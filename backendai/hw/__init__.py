"""Hardware facts of a node: topology from sysfs, device plugins, affinity-aware allocation."""

from __future__ import annotations

from .allocation import Allocation, FreeMap, free_map
from .arch import host_architecture, normalize_arch
from .capacity import detect_capacity, node_capacity, total_memory
from .cpulist import format_cpulist, parse_cpulist
from .detect import load_topology, read_topology
from .locality import Distance
from .plugin import (
    ContainerResources,
    DevicePlugin,
    DeviceRequest,
    load_device_plugins,
)
from .policy import POLICIES, allocate
from .topology import CPU, DeviceKind, NumaNode, PCIDevice, Topology
from .units import SlotMode, SlotSpec, Unit

__all__ = [
    "CPU",
    "POLICIES",
    "Allocation",
    "ContainerResources",
    "DeviceKind",
    "DevicePlugin",
    "DeviceRequest",
    "Distance",
    "FreeMap",
    "NumaNode",
    "PCIDevice",
    "SlotMode",
    "SlotSpec",
    "Topology",
    "Unit",
    "allocate",
    "detect_capacity",
    "format_cpulist",
    "free_map",
    "host_architecture",
    "load_device_plugins",
    "load_topology",
    "node_capacity",
    "normalize_arch",
    "parse_cpulist",
    "read_topology",
    "total_memory",
]
