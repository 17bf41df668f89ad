"""Per-keypair request rate limits over a sliding window.

A window counts the requests of the last ``window`` seconds (a log of their
times, not fixed buckets, so a burst at a bucket edge cannot double the rate).
Managers sharing Redis share the count (:class:`~backendai.bus.RedisEventBus`
keeps it in a sorted set); one process alone keeps it in memory.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MemoryRateWindow", "RateDecision", "RateWindow", "decide"]


class RateWindow(Protocol):
    async def hit(self, key: str, now: float, window: float) -> int:
        """Record a request by *key* at *now*; return the requests in ``(now - window, now]``."""
        ...


class MemoryRateWindow:
    """The window for one process: the request times of each key, oldest first."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key: str, now: float, window: float) -> int:
        times = self._hits.setdefault(key, deque())
        while times and times[0] <= now - window:
            times.popleft()
        times.append(now)
        if len(self._hits) > 100000:  # forget idle keys rather than grow without bound
            for k in [k for k, t in self._hits.items() if t[-1] <= now - window]:
                del self._hits[k]
        return len(times)


@dataclass(frozen=True)
class RateDecision:
    limit: int
    remaining: int
    window: float

    @property
    def allowed(self) -> bool:
        return self.remaining >= 0

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Window": f"{self.window:g}",
        }


def decide(count: int, limit: int, window: float) -> RateDecision:
    """The decision for the *count*-th request in the window under *limit*."""
    return RateDecision(limit, limit - count, window)
