"""Read a host's :class:`~backendai.hw.topology.Topology` from a sysfs root.

``read_topology`` is blocking (it reads files) and deterministic over the tree
it is given, so tests run it on generated trees; ``load_topology`` runs it in a
worker thread for the agent, and for the real ``/sys`` adds the host's MemTotal
(``/proc/meminfo``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import trio

from .capacity import total_memory
from .cpus import read_cpus_and_nodes
from .pci import read_pci_devices
from .sysfs import SysfsReader
from .topology import Topology

__all__ = ["load_topology", "read_topology"]

log = logging.getLogger(__name__)


def read_topology(root: str | os.PathLike[str] = "/sys") -> Topology:
    """The layout under *root*; oddities become ``Topology.warnings``, never exceptions."""
    r = SysfsReader(root)
    cpus, nodes, offline, numa = read_cpus_and_nodes(r)
    devices = read_pci_devices(r, {n.id: n.cpus for n in nodes})
    return Topology(
        nodes=nodes,
        cpus=cpus,
        devices=devices,
        offline_cpus=offline,
        numa=numa,
        warnings=tuple(r.warnings),
    )


async def load_topology(root: str | os.PathLike[str] = "/sys") -> Topology:
    """:func:`read_topology` in a worker thread; warnings and a summary go to the log."""
    topology = await trio.to_thread.run_sync(read_topology, root)
    if str(await trio.Path(root).resolve()) != "/sys":
        return _logged(topology, root)  # another tree (a copy, a test): /proc is not its
    host_mem = await trio.to_thread.run_sync(total_memory)
    if topology.mem_total and abs(host_mem - topology.mem_total) > topology.mem_total // 20:
        log.info(
            "the NUMA nodes under %s hold %d bytes, the kernel reports %d: node memory is "
            "weighed by the nodes' sizes",
            root,
            topology.mem_total,
            host_mem,
        )
    return _logged(replace(topology, host_mem=host_mem), root)


def _logged(topology: Topology, root: str | os.PathLike[str]) -> Topology:
    for warning in topology.warnings:
        log.warning("hardware topology under %s: %s", root, warning)
    log.info(
        "hardware under %s: %d sockets, %d NUMA nodes, %d online CPUs, %d GPUs, %d NICs, "
        "%d NVMe controllers",
        root,
        len(topology.sockets),
        len(topology.nodes),
        len(topology.cpus),
        sum(1 for d in topology.devices if d.kind == "gpu"),
        sum(1 for d in topology.devices if d.kind == "nic"),
        sum(1 for d in topology.devices if d.kind == "nvme"),
    )
    return topology
