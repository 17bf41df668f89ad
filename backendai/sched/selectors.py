"""The built-in agent selectors: which of the agents that fit takes a kernel.

Each has the plain form every plugin has (``select(request, candidates)``: the
candidates all fit) and a fast ``index`` over a pool view that picks the same
agent without looking at every one:

* ``first-fit``: the lowest agent id (the seed's policy).
* ``concentrated``: bin-packing; the agent with the least free capacity, ranked
  by slot in :func:`~backendai.sched.pool.slot_order` (devices, cpu, mem).
* ``dispersed``: spread; the agent with the most free capacity, same ranking.
* ``roundrobin``: the next agent in id order after the one that got the latest
  placement in the group.  The manager derives that agent from the newest
  allocation row, so the rotation survives restarts without stored state.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from .blocks import BlockedFree
from .model import AgentSnapshot, KernelRequest
from .pool import AgentIndex, AgentPool, MaxTree, Vec, slot_order

__all__ = [
    "ConcentratedSelector",
    "DispersedSelector",
    "FirstFitSelector",
    "RoundRobinSelector",
]


def _rank(candidates: Sequence[AgentSnapshot]) -> list[tuple[Vec, str]]:
    names: set[str] = set()
    for a in candidates:
        names |= set(a.capacity)
    order = slot_order(names)
    return [(tuple(a.free[s] for s in order), a.id) for a in candidates]


class FirstFitSelector:
    name = "first-fit"

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None:
        return min((a.id for a in candidates), default=None)

    def index(self, pool: AgentPool, members: Sequence[int]) -> AgentIndex:
        return _TreeIndex(pool, members, rotate=False)


class RoundRobinSelector:
    """Stateful in its plain form: it remembers the agent it chose last."""

    name = "roundrobin"

    def __init__(self) -> None:
        self.last: str | None = None

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None:
        ids = sorted(a.id for a in candidates)
        if not ids:
            return None
        after = [i for i in ids if self.last is None or i > self.last]
        self.last = after[0] if after else ids[0]
        return self.last

    def index(self, pool: AgentPool, members: Sequence[int]) -> AgentIndex:
        return _TreeIndex(pool, members, rotate=True)


class ConcentratedSelector:
    name = "concentrated"

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None:
        return min(_rank(candidates), default=(None, None))[1]

    def index(self, pool: AgentPool, members: Sequence[int]) -> AgentIndex:
        return _SortedIndex(pool, members, most_free=False)


class DispersedSelector:
    name = "dispersed"

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None:
        return max(_rank(candidates), default=(None, None))[1]

    def index(self, pool: AgentPool, members: Sequence[int]) -> AgentIndex:
        return _SortedIndex(pool, members, most_free=True)


class _TreeIndex:
    """first-fit and roundrobin: the first agent in id order (from a cursor) that fits."""

    def __init__(self, pool: AgentPool, members: Sequence[int], *, rotate: bool) -> None:
        self._pool = pool
        self._tree = MaxTree(pool, members)
        self._rotate = rotate

    def find(self, request: KernelRequest, need: Vec, exclude: Container[int]) -> int | None:
        tree = self._tree
        n = len(tree.members)
        start = tree.after(self._pool.last_agent) if self._rotate else 0
        found = tree.first(need, start, n, exclude)
        if found is None and start:
            found = tree.first(need, 0, start, exclude)
        return None if found is None else tree.members[found]

    def updated(self, i: int) -> None:
        self._tree.updated(i)


class _SortedIndex:
    """concentrated and dispersed: agents sorted by free capacity (then id); the search
    takes the first (concentrated) or last (dispersed) that fits."""

    def __init__(self, pool: AgentPool, members: Sequence[int], *, most_free: bool) -> None:
        self._pool = pool
        self._most_free = most_free
        self._key = {i: (pool.free[i], pool.ids[i]) for i in members}
        self._sorted = BlockedFree((k, i) for i, k in self._key.items())

    def find(self, request: KernelRequest, need: Vec, exclude: Container[int]) -> int | None:
        if not need:
            return None
        if self._most_free:
            return self._sorted.last_fit(need, exclude)
        return self._sorted.first_fit(need, exclude)

    def updated(self, i: int) -> None:
        self._sorted.remove((self._key[i], i))
        new = self._key[i] = (self._pool.free[i], self._pool.ids[i])
        self._sorted.add((new, i))
