"""Agent selection: which agent hosts a kernel.  Pure functions over snapshots.

The core platform ships ``first-fit`` (the first agent, in id order, whose
free slots fit the request).  Selectors are looked up by name, from the
built-ins and the ``backendai.agent_selectors`` entry-point group, so the
Sokovan policies (and third parties) plug in without touching the loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

from ..errors import ConfigError
from .slots import ResourceSlots

__all__ = [
    "AgentSelector",
    "AgentSnapshot",
    "FirstFitSelector",
    "KernelRequest",
    "Placement",
    "get_agent_selector",
    "place_session",
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
    kernel_id: str
    image: str
    architecture: str
    slots: ResourceSlots


@dataclass(frozen=True)
class Placement:
    """kernel id -> agent id, for every kernel of a session; or why none."""

    assignments: Mapping[str, str]
    reason: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.assignments)


class AgentSelector(Protocol):
    name: str

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None:
        """Pick an agent id among *candidates* (all of which fit), or None."""
        ...


class FirstFitSelector:
    name = "first-fit"

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None:
        return min((a.id for a in candidates), default=None)


_BUILTIN: dict[str, type[AgentSelector]] = {"first-fit": FirstFitSelector}


def get_agent_selector(name: str) -> AgentSelector:
    if name in _BUILTIN:
        return _BUILTIN[name]()
    for ep in entry_points(group="backendai.agent_selectors"):
        if ep.name == name:
            cls: type[AgentSelector] = ep.load()
            return cls()
    known = sorted(
        set(_BUILTIN) | {ep.name for ep in entry_points(group="backendai.agent_selectors")}
    )
    raise ConfigError(f"unknown agent selector {name!r}; known: {', '.join(known)}")


def _fits(agent: AgentSnapshot, req: KernelRequest) -> bool:
    return (
        agent.architecture == req.architecture
        and req.image in agent.images
        and req.slots.fits_in(agent.free)
    )


def place_session(
    kernels: Sequence[KernelRequest],
    agents: Sequence[AgentSnapshot],
    selector: AgentSelector,
) -> Placement:
    """Place every kernel of one session, or none (atomic); say why when it can't."""
    pool = {a.id: a for a in agents}
    assignments: dict[str, str] = {}
    for req in kernels:
        candidates = [a for a in pool.values() if _fits(a, req)]
        chosen = selector.select(req, candidates) if candidates else None
        if chosen is None and candidates:
            return Placement(
                {},
                f"agent selector {selector.name!r} chose none of the {len(candidates)} "
                f"agents that can fit {req.slots.human()}",
            )
        if chosen is None:
            return Placement({}, _why_not(req, list(pool.values())))
        agent = pool[chosen]
        pool[chosen] = AgentSnapshot(
            agent.id,
            agent.resource_group,
            agent.architecture,
            agent.capacity,
            agent.occupied + req.slots,
            agent.images,
        )
        assignments[req.kernel_id] = chosen
    return Placement(assignments)


def _why_not(req: KernelRequest, agents: Sequence[AgentSnapshot]) -> str:
    if not agents:
        return "no alive agent in the resource group"
    with_image = [a for a in agents if req.image in a.images and a.architecture == req.architecture]
    if not with_image:
        return f"no alive agent has image {req.image} ({req.architecture})"
    largest = max(with_image, key=lambda a: (a.free["cpu"], a.free["mem"]))
    return f"no agent can fit {req.slots.human()} now; largest free: {largest.free.human()}"
