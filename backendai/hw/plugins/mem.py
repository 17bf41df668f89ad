"""The ``mem`` slot: memory per NUMA node, pinned with ``cpuset.mems``.

One unit per node with memory; the agent's memory capacity (``agent.mem``, or
what the nodes hold less ``agent.reserved_mem``) is split over the nodes in
proportion to their size.  A kernel's ``cpuset.mems`` is the nodes its memory
comes from, or, asking for none, the nodes of its CPUs and devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ...config import AgentConfig
from ..allocation import Allocation
from ..capacity import node_capacity
from ..locality import node_key
from ..plugin import ContainerResources
from ..topology import Topology
from ..units import SlotMode, SlotSpec, Unit, split_exact

__all__ = ["MemoryPlugin"]


class MemoryPlugin:
    name = "mem"

    def slots(self, config: AgentConfig) -> Sequence[SlotSpec]:
        return (SlotSpec("mem", SlotMode.DIVISIBLE),)

    def units(self, topology: Topology, config: AgentConfig) -> Sequence[Unit]:
        total = node_capacity(config, cpu_count=len(topology.cpus), total_mem=topology.usable_mem)
        nodes = [n for n in topology.nodes if n.mem_total > 0] or list(topology.nodes[:1])
        caps = split_exact(total["mem"], [n.mem_total for n in nodes], quantum=Decimal(1))
        return tuple(
            Unit("mem", str(n.id), n.id, (*node_key(n.socket, n.id), "mem"), cap)
            for n, cap in zip(nodes, caps, strict=True)
            if cap > 0
        )

    def container(self, allocation: Allocation, topology: Topology) -> ContainerResources:
        mems = frozenset(int(i) for i in allocation.unit_ids("mem"))
        return ContainerResources(cpuset_mems=mems or frozenset(allocation.nodes))
