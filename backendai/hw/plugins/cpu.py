"""The ``cpu`` slot: online hardware threads, pinned with ``cpuset.cpus``.

One unit per online CPU, capacity 1.  ``agent.cpu`` below the CPU count
offers only that many CPUs, the highest-numbered ones (the first stay with the
host; a fraction makes one CPU's capacity partial); above it, every CPU's
capacity grows alike (overcommit), so the sum is always exactly ``agent.cpu``.
A kernel takes whole CPUs for the integer part of its request and a share of
one CPU for the rest; its cpuset is every CPU it holds any of.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ...config import AgentConfig
from ..allocation import Allocation
from ..capacity import node_capacity
from ..locality import cpu_key
from ..plugin import ContainerResources
from ..topology import Topology
from ..units import SlotMode, SlotSpec, Unit, split_exact

__all__ = ["CPUPlugin", "cpu_capacities"]


def cpu_capacities(total: Decimal, count: int) -> list[Decimal]:
    """Per-CPU capacity, in CPU id order, adding up to *total* exactly."""
    if total >= count:
        return split_exact(total, [1] * count)
    full = int(total)
    partial = total - full
    caps = [Decimal(0)] * count
    for i in range(count - full, count):
        caps[i] = Decimal(1)
    if partial and count - full - 1 >= 0:
        caps[count - full - 1] = partial
    return caps


class CPUPlugin:
    name = "cpu"

    def slots(self, config: AgentConfig) -> Sequence[SlotSpec]:
        return (SlotSpec("cpu", SlotMode.SHARES),)

    def units(self, topology: Topology, config: AgentConfig) -> Sequence[Unit]:
        total = node_capacity(config, cpu_count=len(topology.cpus), total_mem=topology.usable_mem)
        caps = cpu_capacities(total["cpu"], len(topology.cpus))
        return tuple(
            Unit(
                slot="cpu",
                id=str(c.id),
                node=c.node,
                key=cpu_key(topology.socket_of(c.node), c.node, c.core, c.id),
                capacity=cap,
            )
            for c, cap in zip(topology.cpus, caps, strict=True)
            if cap > 0
        )

    def container(self, allocation: Allocation, topology: Topology) -> ContainerResources:
        return ContainerResources(cpuset_cpus=frozenset(int(i) for i in allocation.unit_ids("cpu")))
