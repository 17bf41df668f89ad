"""What one scheduling pass sees: frozen snapshots of agents and sessions.

The manager reads these from the database (the source of truth) at the start
of a pass; the pure planner never writes them.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .slots import ResourceSlots

__all__ = [
    "AgentSnapshot",
    "Dependency",
    "KernelRequest",
    "PendingSession",
    "Placement",
    "RunningSession",
]


@dataclass(frozen=True)
class AgentSnapshot:
    id: str
    resource_group: str
    architecture: str
    capacity: ResourceSlots
    occupied: ResourceSlots
    images: frozenset[str]

    @property
    def free(self) -> ResourceSlots:
        return self.capacity - self.occupied


@dataclass(frozen=True)
class KernelRequest:
    """One container to place.  *pullable*: the image is in the catalog for
    *architecture*, so an agent that lacks it may still take the kernel (and pull)."""

    kernel_id: str
    image: str
    architecture: str
    slots: ResourceSlots
    pullable: bool = False


@dataclass(frozen=True)
class Dependency:
    """A session that must have finished successfully before the dependent starts."""

    session_id: str
    name: str
    status: str
    exit_code: int | None = None
    terminated_at: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "TERMINATED" and self.exit_code in (0, None)

    @property
    def failed(self) -> bool:
        return self.status in ("ERROR", "CANCELLED") or (
            self.status == "TERMINATED" and not self.succeeded
        )


@dataclass(frozen=True)
class PendingSession:
    id: str
    name: str
    access_key: str
    resource_group: str
    priority: int
    created_at: float
    kernels: tuple[KernelRequest, ...]
    cluster_mode: str = "single-node"  # single-node | multi-node
    preemptible: bool = False
    starts_at: float | None = None
    dependencies: tuple[Dependency, ...] = ()

    @property
    def slots(self) -> ResourceSlots:
        """Everything the session asks for, all kernels together."""
        total = ResourceSlots()
        for k in self.kernels:
            total = total + k.slots
        return total


@dataclass(frozen=True)
class RunningSession:
    """A session holding live allocations (launching, running or terminating)."""

    id: str
    access_key: str
    resource_group: str
    priority: int
    preemptible: bool
    status: str
    started_at: float
    allocations: tuple[tuple[str, ResourceSlots], ...] = field(default=())  # (agent id, slots)

    @property
    def slots(self) -> ResourceSlots:
        total = ResourceSlots()
        for _, s in self.allocations:
            total = total + s
        return total


@dataclass(frozen=True)
class Placement:
    """kernel id -> agent id, for every kernel of a session; or why none."""

    assignments: Mapping[str, str]
    reason: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.assignments)
