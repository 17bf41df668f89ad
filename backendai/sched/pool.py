"""The agents of one resource group during one planning pass, indexed for fast search.

Free capacity is kept as exact vectors (tuples of :class:`~decimal.Decimal`, one
per slot, in :func:`slot_order`).  Selectors search a *view*: the agents of one
architecture, optionally only those that have one image, optionally only those
without device slots.  Views are built on
first use, and every reservation updates the indexes of the views the agent is
in, so a search costs about ``log(agents)`` instead of a scan.  Pure: no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Container, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Protocol

from .model import AgentSnapshot, KernelRequest
from .slots import ResourceSlots

__all__ = [
    "AgentIndex",
    "AgentPool",
    "IndexedSelector",
    "ListIndex",
    "MaxTree",
    "SimpleSelector",
    "Vec",
    "fits",
    "slot_order",
]

Vec = tuple[Decimal, ...]
_NEVER = Decimal(-1)  # free amount of a padding leaf: nothing fits it


def slot_order(names: Iterable[str]) -> tuple[str, ...]:
    """Scarce device slots first (alphabetically), then ``cpu``, then ``mem``.

    The order of the keys by which ``concentrated`` and ``dispersed`` rank agents.
    """
    names = set(names)
    head = sorted(n for n in names if n not in ("cpu", "mem"))
    return (*head, *(n for n in ("cpu", "mem") if n in names))


def fits(need: Vec, free: Vec) -> bool:
    for n, f in zip(need, free, strict=True):  # noqa: SIM110 - faster than all() on a hot path
        if n > f:
            return False
    return True


class AgentIndex(Protocol):
    def find(self, request: KernelRequest, need: Vec, exclude: Container[int]) -> int | None:
        """The position (in the pool) of the agent to take *need*, or None."""
        ...

    def updated(self, i: int) -> None:
        """The free capacity of agent *i* changed."""
        ...


class SimpleSelector(Protocol):
    """What a third-party agent selector implements (see ``placement.AgentSelector``)."""

    name: str

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None: ...


class IndexedSelector(SimpleSelector, Protocol):
    """A selector that can also build a fast index over a view of the pool."""

    def index(self, pool: AgentPool, members: Sequence[int]) -> AgentIndex: ...


class AgentPool:
    """Mutable pass state: free capacity per agent, views and their indexes."""

    def __init__(
        self,
        agents: Iterable[AgentSnapshot],
        selector: SimpleSelector,
        *,
        last_agent: str | None = None,
    ) -> None:
        self.agents = sorted(agents, key=lambda a: a.id)
        self.selector = selector
        # The agent that got the latest placement in this group (round-robin cursor).
        self.last_agent = last_agent
        names: set[str] = set()
        for a in self.agents:
            names |= set(a.capacity)
        self.slots = slot_order(names)
        self.ids = [a.id for a in self.agents]
        self.position = {a.id: i for i, a in enumerate(self.agents)}
        self.capacity = [self._vec(a.capacity) for a in self.agents]
        self.free = [self._vec(a.capacity - a.occupied) for a in self.agents]
        self._views: dict[tuple[str, str | None, bool], tuple[list[int], AgentIndex]] = {}
        # Agents that offer device slots (anything but cpu and mem): kept for device work.
        self.device_agents = frozenset(
            i for i, a in enumerate(self.agents) if any(s not in ("cpu", "mem") for s in a.capacity)
        )
        self._watchers: list[list[AgentIndex]] = [[] for _ in self.agents]
        self.architectures = frozenset(a.architecture for a in self.agents)
        # (architecture, image, pullable, need) -> why it did not fit: free capacity only
        # shrinks while a pass places sessions, so the same ask fails again.
        self.failed: dict[tuple[object, ...], str] = {}

    def _vec(self, slots: Mapping[str, Decimal]) -> Vec:
        return tuple(slots.get(s, Decimal(0)) for s in self.slots)

    def vector(self, slots: ResourceSlots) -> Vec | None:
        """*slots* as a vector, or None if it asks for a slot no agent here has."""
        if any(s not in self.slots for s in slots):
            return None
        return self._vec(slots)

    def slots_of(self, vec: Vec) -> ResourceSlots:
        return ResourceSlots(dict(zip(self.slots, vec, strict=True)))

    def view(
        self, architecture: str, image: str | None, *, plain: bool = False
    ) -> tuple[list[int], AgentIndex]:
        """The agents of *architecture* (that have *image*, unless None; with *plain*,
        only those without device slots) and their index."""
        key = (architecture, image, plain)
        found = self._views.get(key)
        if found is None:
            members = [
                i
                for i, a in enumerate(self.agents)
                if a.architecture == architecture
                and (image is None or image in a.images)
                and not (plain and i in self.device_agents)
            ]
            make = getattr(self.selector, "index", None)
            index: AgentIndex = (
                make(self, members) if make is not None else ListIndex(self.selector, self, members)
            )
            for i in members:
                self._watchers[i].append(index)
            found = self._views[key] = (members, index)
        return found

    def reserve(self, i: int, need: Vec) -> None:
        self.free[i] = tuple(f - n for f, n in zip(self.free[i], need, strict=True))
        for index in self._watchers[i]:
            index.updated(i)

    def release(self, i: int, amount: Vec, *, forget_failures: bool = False) -> None:
        """Give *amount* back to agent *i*; what failed before may fit now if told so."""
        if forget_failures:
            self.failed.clear()
        self.free[i] = tuple(f + n for f, n in zip(self.free[i], amount, strict=True))
        for index in self._watchers[i]:
            index.updated(i)

    def snapshot(self, i: int) -> AgentSnapshot:
        """Agent *i* with its occupancy as of now in this pass."""
        a = self.agents[i]
        occupied = self.slots_of(
            tuple(c - f for c, f in zip(self.capacity[i], self.free[i], strict=True))
        )
        return AgentSnapshot(a.id, a.resource_group, a.architecture, a.capacity, occupied, a.images)

    def snapshots(self) -> list[AgentSnapshot]:
        return [self.snapshot(i) for i in range(len(self.agents))]


class ListIndex:
    """The slow path for plugin selectors: filter every member, ask ``select``."""

    def __init__(self, selector: SimpleSelector, pool: AgentPool, members: Sequence[int]) -> None:
        self._selector = selector
        self._pool = pool
        self._members = members

    def find(self, request: KernelRequest, need: Vec, exclude: Container[int]) -> int | None:
        pool = self._pool
        candidates = [
            pool.snapshot(i) for i in self._members if i not in exclude and fits(need, pool.free[i])
        ]
        if not candidates:
            return None
        chosen = self._selector.select(request, candidates)
        if chosen is None or chosen not in {c.id for c in candidates}:
            return None
        return pool.position[chosen]

    def updated(self, i: int) -> None:
        pass


class MaxTree:
    """A segment tree over a view in id order; each node holds the per-slot maximum
    of the free capacity below it, so the first agent that fits is found without a scan."""

    def __init__(self, pool: AgentPool, members: Sequence[int]) -> None:
        self._pool = pool
        self.members = list(members)
        self.member_ids = [pool.ids[i] for i in self.members]
        self._pos = {i: p for p, i in enumerate(self.members)}
        self._size = 1 << max(0, len(self.members) - 1).bit_length()
        never = tuple(_NEVER for _ in pool.slots)
        tree = [never] * (2 * self._size)
        for p, i in enumerate(self.members):
            tree[self._size + p] = pool.free[i]
        for node in range(self._size - 1, 0, -1):
            tree[node] = _vmax(tree[2 * node], tree[2 * node + 1])
        self._tree = tree

    def updated(self, i: int) -> None:
        node = self._size + self._pos[i]
        tree = self._tree
        tree[node] = self._pool.free[i]
        node //= 2
        while node:
            new = _vmax(tree[2 * node], tree[2 * node + 1])
            if new == tree[node]:
                return  # nothing above changes either
            tree[node] = new
            node //= 2

    def first(self, need: Vec, start: int, end: int, exclude: Container[int]) -> int | None:
        """The first member position in ``[start, end)`` whose agent fits *need*."""
        if start >= end:
            return None
        return self._first(1, 0, self._size, need, start, end, exclude)

    def _first(
        self,
        node: int,
        lo: int,
        hi: int,
        need: Vec,
        start: int,
        end: int,
        exclude: Container[int],
    ) -> int | None:
        if hi <= start or lo >= end or not fits(need, self._tree[node]):
            return None
        if hi - lo == 1:
            return None if self.members[lo] in exclude else lo
        mid = (lo + hi) // 2
        found = self._first(2 * node, lo, mid, need, start, end, exclude)
        if found is None:
            found = self._first(2 * node + 1, mid, hi, need, start, end, exclude)
        return found

    def after(self, agent_id: str | None) -> int:
        """The position of the first member whose id sorts after *agent_id*."""
        return 0 if agent_id is None else bisect_right(self.member_ids, agent_id)


def _vmax(a: Vec, b: Vec) -> Vec:
    return tuple(x if x >= y else y for x, y in zip(a, b, strict=True))
