"""Agents sorted by free capacity, in blocks that know the most free of each slot.

The index behind ``concentrated`` and ``dispersed``.  Entries are
``((free, agent id), position)`` in ascending order.  Bin-packing leaves many
nearly full agents at the front; a search skips every block whose per-slot
maximum cannot hold the request, so it looks at about ``sqrt(agents)`` blocks
and entries instead of every agent.  Updates move one entry: O(block).  A
block's maximum is an upper bound (removing an entry does not lower it); a
search that scans a block and finds nothing that fits recomputes it.  Pure.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Container, Iterable

from .pool import Vec, fits

__all__ = ["BlockedFree", "Entry"]

Entry = tuple[tuple[Vec, str], int]  # ((free, agent id), pool position)
_BLOCK = 64


def _max(entries: list[Entry]) -> Vec:
    vecs = [e[0][0] for e in entries]
    return tuple(max(col) for col in zip(*vecs, strict=True))


class BlockedFree:
    def __init__(self, entries: Iterable[Entry], *, block: int = _BLOCK) -> None:
        ordered = sorted(entries)
        self._size = block
        self._blocks = [ordered[i : i + block] for i in range(0, len(ordered), block)]
        self._firsts = [b[0] for b in self._blocks]
        self._maxes = [_max(b) for b in self._blocks]

    def _refresh(self, b: int, recompute: bool) -> None:
        block = self._blocks[b]
        if not block:
            del self._blocks[b], self._firsts[b], self._maxes[b]
            return
        if len(block) > 2 * self._size:
            half = len(block) // 2
            self._blocks[b : b + 1] = [block[:half], block[half:]]
            self._firsts[b : b + 1] = [block[0], block[half]]
            self._maxes[b : b + 1] = [_max(block[:half]), _max(block[half:])]
            return
        self._firsts[b] = block[0]
        if recompute:
            self._maxes[b] = _max(block)

    def remove(self, entry: Entry) -> None:
        b = max(0, bisect_right(self._firsts, entry) - 1)
        block = self._blocks[b]
        del block[bisect_left(block, entry)]
        # The block's maximum stays an upper bound; a search that finds it stale refreshes it.
        self._refresh(b, False)

    def add(self, entry: Entry) -> None:
        free = entry[0][0]
        if not self._blocks:
            self._blocks, self._firsts, self._maxes = [[entry]], [entry], [free]
            return
        b = max(0, bisect_right(self._firsts, entry) - 1)
        insort(self._blocks[b], entry)
        self._maxes[b] = tuple(
            x if x >= y else y for x, y in zip(self._maxes[b], free, strict=True)
        )
        self._refresh(b, False)

    def first_fit(self, need: Vec, exclude: Container[int]) -> int | None:
        """The position of the least-free agent (in entry order) that fits *need*."""
        probe: Entry = (((need[0],), ""), -1)  # sorts before every entry with free[0] >= need[0]
        start = max(0, bisect_right(self._firsts, probe) - 1)
        for b in range(start, len(self._blocks)):
            if not fits(need, self._maxes[b]):
                continue
            block = self._blocks[b]
            lo = bisect_left(block, probe) if b == start else 0
            stale = lo == 0  # a whole block scanned with nothing that fits: stale maximum
            for k in range(lo, len(block)):
                (free, _), i = block[k]
                if fits(need, free):
                    if i not in exclude:
                        return i
                    stale = False
            if stale:
                self._maxes[b] = _max(block)
        return None

    def last_fit(self, need: Vec, exclude: Container[int]) -> int | None:
        """The position of the most-free agent (in entry order) that fits *need*."""
        for b in range(len(self._blocks) - 1, -1, -1):
            if self._maxes[b][0] < need[0]:
                return None  # this block and every earlier one have too little of slot 0
            if not fits(need, self._maxes[b]):
                continue
            stale = True
            for (free, _), i in reversed(self._blocks[b]):
                if fits(need, free):
                    if i not in exclude:
                        return i
                    stale = False
            if stale:
                self._maxes[b] = _max(self._blocks[b])
        return None
