"""Placing one session's kernels on agents, all or none, and saying why not.

Modes: ``single-node`` puts every kernel on one agent (their sum must fit it);
``multi-node`` puts each kernel on a different agent; ``any`` places kernels
one by one wherever they fit.  A kernel goes first to an agent that has its
image; when none fits and the image is in the catalog for the architecture
(``KernelRequest.pullable``), an agent that lacks it is acceptable (it pulls).
A kernel that asks for no device slot goes to an agent without devices when one
fits, so accelerator agents stay free for the work that needs them.
A failed placement reserves nothing.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from .model import AgentSnapshot, KernelRequest, Placement
from .pool import AgentPool, SimpleSelector, Vec, fits
from .selectors import FirstFitSelector
from .slots import format_amount

__all__ = [
    "AgentSelector",
    "FirstFitSelector",
    "place",
    "place_session",
]

MODES = ("any", "single-node", "multi-node")


class AgentSelector(Protocol):
    """Picks an agent id among *candidates* (all of which fit), or None."""

    name: str

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None: ...


def place_session(
    kernels: Sequence[KernelRequest],
    agents: Sequence[AgentSnapshot],
    selector: SimpleSelector,
    *,
    mode: str = "any",
) -> Placement:
    """Place every kernel of one session on *agents* (snapshots left untouched)."""
    return place(AgentPool(agents, selector), kernels, mode)


def place(pool: AgentPool, kernels: Sequence[KernelRequest], mode: str = "any") -> Placement:
    """Place every kernel, reserving in *pool*; or reserve nothing and say why."""
    if mode not in MODES:
        raise ValueError(f"unknown cluster mode {mode!r}; known: {', '.join(MODES)}")
    if not kernels:
        return Placement({}, "the session has no kernel to place")
    if mode == "single-node" and len(kernels) > 1:
        total = kernels[0].slots
        for k in kernels[1:]:
            total = total + k.slots
        first = kernels[0]
        combined = KernelRequest(
            first.kernel_id, first.image, first.architecture, total, first.pullable
        )
        found = _find(pool, combined, ())
        if isinstance(found, str):
            return Placement({}, f"single-node, {len(kernels)} kernels together: {found}")
        i, need = found
        pool.reserve(i, need)
        pool.last_agent = pool.ids[i]
        return Placement({k.kernel_id: pool.ids[i] for k in kernels})
    taken: list[tuple[int, Vec]] = []
    used: set[int] = set()
    for n, req in enumerate(kernels):
        found = _find(pool, req, used if mode == "multi-node" else ())
        if isinstance(found, str):
            for i, need in reversed(taken):
                pool.release(i, need)
            if len(kernels) > 1:
                how = "" if mode == "any" else f" ({mode})"
                found = f"kernel {n + 1} of {len(kernels)}{how}: {found}"
            return Placement({}, found)
        i, need = found
        pool.reserve(i, need)
        taken.append((i, need))
        used.add(i)
    pool.last_agent = pool.ids[taken[-1][0]]
    return Placement(
        {req.kernel_id: pool.ids[i] for req, (i, _) in zip(kernels, taken, strict=True)}
    )


def _find(pool: AgentPool, req: KernelRequest, exclude: Collection[int]) -> tuple[int, Vec] | str:
    """The agent for *req* and the vector to reserve, or the reason there is none."""
    need = pool.vector(req.slots)
    cache_key = (req.architecture, req.image, req.pullable, need)
    if not exclude and cache_key in pool.failed:
        return pool.failed[cache_key]
    if need is not None:
        for image, plain in _tiers(pool, req):
            _, index = pool.view(req.architecture, image, plain=plain)
            i = index.find(req, need, exclude)
            if i is not None:
                return i, need
    reason = why_not(pool, req, need, exclude)
    if not exclude:
        # Free capacity only shrinks while a pass places sessions: the same ask fails again.
        pool.failed[cache_key] = reason
    return reason


def _tiers(pool: AgentPool, req: KernelRequest) -> list[tuple[str | None, bool]]:
    """Where to look, in order: agents with the image before those that would pull it;
    for a kernel that asks for no device, agents without devices before the others."""
    images: list[str | None] = [req.image, None] if req.pullable else [req.image]
    spare_devices = bool(pool.device_agents) and all(s in ("cpu", "mem") for s in req.slots)
    return [
        (img, plain) for img in images for plain in ((True, False) if spare_devices else (False,))
    ]


def why_not(pool: AgentPool, req: KernelRequest, need: Vec | None, exclude: Collection[int]) -> str:
    """Which check failed, what was asked, and what is free."""
    asked = req.slots.human()
    if not pool.agents:
        return "no alive agent in the resource group"
    if need is None:
        missing = sorted(s for s in req.slots if s not in pool.slots)
        return (
            f"no alive agent here has slot {', '.join(missing)} (asked {asked}; "
            f"slots here: {', '.join(pool.slots)})"
        )
    if req.architecture not in pool.architectures:
        return (
            f"no alive agent runs {req.architecture} "
            f"(architectures here: {', '.join(sorted(pool.architectures))})"
        )
    members, _ = pool.view(req.architecture, None if req.pullable else req.image)
    if not members:
        return (
            f"no alive agent has image {req.image} ({req.architecture}), and the image "
            f"catalog has no {req.architecture} build of it to pull"
        )
    able = [i for i in members if fits(need, pool.free[i])]
    if able and not (set(able) - set(exclude)):
        return (
            f"only {len(able)} agent(s) can fit {asked} and each already holds a kernel "
            "of this session; multi-node needs one agent per kernel"
        )
    if able:
        return (
            f"agent selector {pool.selector.name!r} chose none of the {len(able)} "
            f"agents that can fit {asked}"
        )
    largest = max(members, key=lambda i: (pool.free[i], pool.ids[i]))
    short = [
        f"{name} on {count} of {len(members)}"
        for s, name in enumerate(pool.slots)
        if need[s] > 0 and (count := sum(1 for i in members if pool.free[i][s] < need[s]))
    ]
    return (
        f"no agent can fit {asked} now; largest free: "
        f"{_shown(pool, pool.free[largest], need)} (agent {pool.ids[largest]}); "
        f"short of {', '.join(short)} agents"
    )


def _shown(pool: AgentPool, free: Vec, need: Vec) -> str:
    """Free amounts for a message: every slot asked for (even at 0), and any other held."""
    parts = [
        f"{name}={format_amount(name, free[s])}"
        for s, name in sorted(enumerate(pool.slots), key=lambda x: x[1])
        if need[s] > 0 or free[s] != 0
    ]
    return " ".join(parts) or "nothing"
