"""The DevicePlugin seam: slot types, units from the topology, what a container gets.

A plugin is a class with a no-argument constructor, registered by name in the
entry-point group ``backendai.device_plugins`` (built in: ``cpu``, ``mem``,
``cuda``); a third party adds one the same way.  A plugin that finds no
hardware of its kind offers no units, and its slots then have no capacity.

* ``slots(config)``: the slots it offers and how each is handed out.
* ``units(topology, config)``: the allocatable units, with capacity and locality.
* ``container(allocation, topology)``: cpusets, device requests and environment
  for the container of a kernel holding *allocation*.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from ..config import AgentConfig
from ..errors import ConfigError
from .allocation import Allocation
from .topology import Topology
from .units import SlotSpec, Unit

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ContainerResources",
    "DevicePlugin",
    "DeviceRequest",
    "load_device_plugins",
]

ENTRY_POINT_GROUP = "backendai.device_plugins"
BUILTIN_PLUGINS: Mapping[str, str] = {
    "cpu": "backendai.hw.plugins.cpu:CPUPlugin",
    "mem": "backendai.hw.plugins.mem:MemoryPlugin",
    "cuda": "backendai.hw.plugins.cuda:CUDAPlugin",
}


@dataclass(frozen=True)
class DeviceRequest:
    """A Docker device request (``--gpus``): driver, device ids, capabilities."""

    driver: str
    device_ids: tuple[str, ...]
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class ContainerResources:
    """What a container gets for its allocation; plugins' parts combine with ``|``."""

    cpuset_cpus: frozenset[int] = frozenset()
    cpuset_mems: frozenset[int] = frozenset()
    device_requests: tuple[DeviceRequest, ...] = ()
    environ: Mapping[str, str] = field(default_factory=dict)

    def __or__(self, other: ContainerResources) -> ContainerResources:
        return ContainerResources(
            self.cpuset_cpus | other.cpuset_cpus,
            self.cpuset_mems | other.cpuset_mems,
            self.device_requests + other.device_requests,
            {**self.environ, **other.environ},
        )


class DevicePlugin(Protocol):
    name: str

    def slots(self, config: AgentConfig) -> Sequence[SlotSpec]: ...

    def units(self, topology: Topology, config: AgentConfig) -> Sequence[Unit]: ...

    def container(self, allocation: Allocation, topology: Topology) -> ContainerResources: ...


def _load(name: str, target: Any) -> DevicePlugin:
    try:
        plugin: DevicePlugin = target()
    except Exception as e:
        raise ConfigError(f"device plugin {name!r} cannot be created: {e}") from e
    return plugin


def load_device_plugins() -> list[DevicePlugin]:
    """Every registered plugin: the built-ins, then entry points by name (one may replace one)."""
    targets: dict[str, Any] = {}
    for name, ref in BUILTIN_PLUGINS.items():
        module, _, attr = ref.partition(":")
        targets[name] = getattr(importlib.import_module(module), attr)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            targets[ep.name] = ep.load()
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                f"device plugin {ep.name!r} ({ep.value}) cannot be loaded: {e}"
            ) from e
    return [_load(name, target) for name, target in targets.items()]
