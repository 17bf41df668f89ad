"""Shares of a resource group: dominant share (DRF) and decayed historical usage.

The dominant share of an amount is its largest fraction of the group's capacity
over all slots.  Historical usage is derived from allocation intervals (start,
end or still live): an allocation of amount *a* counts ``a * 2**(-age/half_life)``
per second, integrated over its life, so yesterday's usage weighs half of
today's when the half-life is one day.  Nothing is counted incrementally; the
manager reads the intervals from allocation rows each pass.  Pure: no I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from .slots import ResourceSlots

__all__ = ["UsageInterval", "decayed_shares", "dominant_share"]


@dataclass(frozen=True)
class UsageInterval:
    access_key: str
    slots: ResourceSlots
    start: float
    end: float | None  # None: still allocated


def dominant_share(amount: Mapping[str, Decimal], capacity: Mapping[str, Decimal]) -> Decimal:
    """max over slots of amount/capacity (slots the group lacks are ignored)."""
    best = Decimal(0)
    for slot, value in amount.items():
        cap = capacity.get(slot, Decimal(0))
        if cap > 0 and value > 0:
            share = value / cap
            if share > best:
                best = share
    return best


def _decayed_seconds(start: float, end: float, now: float, half_life: float) -> float:
    """Integral over [start, end] of 2**(-(now - t)/half_life) dt."""
    k = math.log(2) / half_life
    end = min(end, now)
    if end <= start:
        return 0.0
    return (math.exp(-k * (now - end)) - math.exp(-k * (now - start))) / k


def decayed_shares(
    intervals: Iterable[UsageInterval],
    capacity: Mapping[str, Decimal],
    now: float,
    half_life: float,
) -> dict[str, float]:
    """access key -> decayed dominant usage, as the average share over one half-life.

    Per slot, sum ``amount * decayed seconds``, divide by capacity, take the
    largest slot, and divide by ``half_life / ln 2`` (the decayed length of
    forever): a user who held 30% of the group for ever scores 0.3.
    """
    if half_life <= 0:
        raise ValueError(f"half_life must be > 0 seconds, got {half_life!r}")
    per_slot: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for iv in intervals:
        seconds = _decayed_seconds(iv.start, now if iv.end is None else iv.end, now, half_life)
        if seconds <= 0:
            continue
        for slot, value in iv.slots.items():
            per_slot[iv.access_key][slot] += float(value) * seconds
    horizon = half_life / math.log(2)
    out: dict[str, float] = {}
    for key, slots in per_slot.items():
        shares = [v / float(capacity[s]) for s, v in slots.items() if capacity.get(s, 0) > 0]
        out[key] = max(shares, default=0.0) / horizon
    return out
