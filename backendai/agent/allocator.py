"""The agent's device allocations: which kernel holds which CPUs, memory nodes and GPUs.

Built once per agent process from the host topology and the device plugins.
The live allocations are a map kernel id -> :class:`~backendai.hw.Allocation`;
free amounts are derived from it on every request, never counted.  Each
allocation is recorded with its kernel (a container label), so a restarted
agent rebuilds this map from ``backend.list()`` (:meth:`Allocator.rebuild`).

All methods are synchronous: under Trio, an allocation is chosen and recorded
with no checkpoint in between, so two concurrent creates never pick the same
units.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import trio

from ..config import AgentConfig
from ..errors import ConfigError, InsufficientResources
from ..hw import (
    Allocation,
    ContainerResources,
    DevicePlugin,
    FreeMap,
    SlotSpec,
    Topology,
    Unit,
    allocate,
    free_map,
    load_device_plugins,
)
from ..sched.slots import ResourceSlots
from .backend import KernelInfo, KernelSpec

__all__ = ["Allocator", "open_allocator"]

log = logging.getLogger(__name__)


def _describe(allocation: Allocation) -> str:
    parts = [f"{slot} {','.join(allocation.unit_ids(slot))}" for slot in sorted(allocation.parts)]
    return f"{'; '.join(parts)} (nodes {list(allocation.nodes)}, distances {allocation.distances})"


class Allocator:
    def __init__(
        self, topology: Topology, plugins: Sequence[DevicePlugin], config: AgentConfig
    ) -> None:
        self.topology = topology
        self.plugins = list(plugins)
        self.policy = config.allocation_policy
        self.specs: dict[str, SlotSpec] = {}
        units: dict[tuple[str, str], Unit] = {}
        owner: dict[str, str] = {}
        for plugin in self.plugins:
            for spec in plugin.slots(config):
                if spec.name in owner:
                    raise ConfigError(
                        f"device plugins {owner[spec.name]!r} and {plugin.name!r} both offer "
                        f"slot {spec.name!r}; remove one of them"
                    )
                owner[spec.name] = plugin.name
                self.specs[spec.name] = spec
            for unit in plugin.units(topology, config):
                if unit.slot not in self.specs or owner[unit.slot] != plugin.name:
                    raise ConfigError(
                        f"device plugin {plugin.name!r} offers unit {unit.id!r} of slot "
                        f"{unit.slot!r}, which it does not declare"
                    )
                units[(unit.slot, unit.id)] = unit
        self.units = tuple(units.values())
        self._live: dict[str, Allocation] = {}

    # -- state -------------------------------------------------------------------

    def capacity(self) -> ResourceSlots:
        total: dict[str, Decimal] = {}
        for u in self.units:
            total[u.slot] = total.get(u.slot, Decimal(0)) + u.capacity
        return ResourceSlots(total)

    def occupied(self) -> ResourceSlots:
        held = ResourceSlots()
        for allocation in self._live.values():
            held = held + allocation.slots()
        return held

    def free(self) -> FreeMap:
        return free_map(self.units, self._live.values())

    def get(self, kernel_id: str) -> Allocation | None:
        return self._live.get(kernel_id)

    def live(self) -> dict[str, Allocation]:
        return dict(self._live)

    # -- changes -------------------------------------------------------------------

    def allocate(self, kernel_id: str, slots: ResourceSlots) -> Allocation:
        """The kernel's allocation: the one it holds, else a new one.  InsufficientResources."""
        held = self._live.get(kernel_id)
        if held is not None:
            return held
        try:
            allocation = allocate(
                slots, self.units, self.specs, self.free(), self.topology, self.policy
            )
        except InsufficientResources as e:
            raise InsufficientResources(f"kernel {kernel_id}: {e}") from None
        self._live[kernel_id] = allocation
        log.info("kernel %s holds %s", kernel_id, _describe(allocation))
        return allocation

    def release(self, kernel_id: str) -> Allocation | None:
        released = self._live.pop(kernel_id, None)
        if released is not None:
            log.info("kernel %s released %s", kernel_id, _describe(released))
        return released

    def adopt(self, kernel_id: str, allocation: Allocation) -> None:
        """Take over an allocation recorded with a kernel (overrides what is held for it)."""
        self._live.pop(kernel_id, None)
        free = self.free()
        known = {(u.slot, u.id) for u in self.units}
        for key, amount in allocation.amounts():
            if key not in known:
                log.warning(
                    "kernel %s holds %s %s, which this host no longer offers; ignored",
                    kernel_id,
                    *key,
                )
            elif free[key] < amount:
                log.warning(
                    "kernel %s holds %s of %s %s, but only %s is free: it is shared with "
                    "another kernel (a conflict left by an earlier agent)",
                    kernel_id,
                    amount,
                    *key,
                    free[key],
                )
        self._live[kernel_id] = allocation

    def rebuild(self, kernels: Iterable[KernelInfo]) -> None:
        """Recreate the live map from the backend's kernels (after an agent restart)."""
        self._live.clear()
        unrecorded: list[KernelInfo] = []
        for k in kernels:
            if k.allocation is not None:
                self.adopt(k.kernel_id, k.allocation)
            else:
                unrecorded.append(k)
        for k in unrecorded:  # kernels of an older agent: account for their slots
            try:
                self.allocate(k.kernel_id, k.slots)
            except InsufficientResources as e:
                log.warning("kernel %s has no recorded allocation and %s", k.kernel_id, e)
        if self._live:
            log.info(
                "rebuilt %d allocations from running kernels; occupied %s",
                len(self._live),
                self.occupied().human(),
            )

    def pin(self, spec: KernelSpec) -> tuple[KernelSpec, bool]:
        """*spec* with its allocation and container resources; True when newly allocated."""
        fresh = spec.kernel_id not in self._live
        allocation = self.allocate(spec.kernel_id, spec.slots)
        return replace(spec, allocation=allocation, resources=self.container(allocation)), fresh

    def settle(self, info: KernelInfo) -> None:
        """After a create: a kernel that already existed keeps what its container records."""
        if info.allocation is not None and info.allocation != self._live.get(info.kernel_id):
            log.info("kernel %s existed already; adopting its recorded allocation", info.kernel_id)
            self.adopt(info.kernel_id, info.allocation)

    # -- what containers get, and what the heartbeat says ------------------------

    def container(self, allocation: Allocation) -> ContainerResources:
        out = ContainerResources()
        for plugin in self.plugins:
            out = out | plugin.container(allocation, self.topology)
        return out

    def hardware(self) -> dict[str, Any]:
        """The heartbeat's ``hardware``: the topology and how kernels are placed on it."""
        return {
            **self.topology.summary(),
            "allocation_policy": self.policy,
            "slots": {name: spec.mode.value for name, spec in sorted(self.specs.items())},
            "allocations": {k: a.to_json() for k, a in sorted(self._live.items())},
        }


async def open_allocator(config: AgentConfig, topology: Topology) -> Allocator:
    """The allocator over *topology* with every registered device plugin."""
    allocator = await trio.to_thread.run_sync(
        lambda: Allocator(topology, load_device_plugins(), config)
    )
    log.info("device allocation (%s) over %s", allocator.policy, allocator.capacity().human())
    return allocator
