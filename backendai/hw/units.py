"""What device plugins offer to the allocator: slots and the units behind them.

A *unit* is one thing an amount of a slot is taken from: a hardware thread
(``cpu``), a NUMA node's memory (``mem``), a GPU (``cuda.device``).  Each
has a capacity, its NUMA node and a locality key
(:mod:`backendai.hw.locality`).  How a slot's amount is spread over its units
is the slot's mode: one kernel takes at most 1 of a unit of a WHOLE or SHARES
slot (one thread, one GPU), any part of a DIVISIBLE one.  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

__all__ = ["SlotMode", "SlotSpec", "Unit", "split_exact"]


class SlotMode(StrEnum):
    # Integer amounts only; each unit is taken whole (cuda.device).
    WHOLE = "whole"
    # Whole units for the integer part, a share of one unit for the rest (cpu, cuda.shares).
    SHARES = "shares"
    # Any amount, split over units (mem, per NUMA node).
    DIVISIBLE = "divisible"


@dataclass(frozen=True)
class SlotSpec:
    name: str
    mode: SlotMode
    # Anchors (devices) are placed first; CPUs and memory follow them to their NUMA nodes.
    anchor: bool = False


@dataclass(frozen=True)
class Unit:
    slot: str
    id: str  # "7" (cpu), "0" (a node's memory), "0000:1b:00.0" (a GPU)
    node: int
    key: tuple[str, ...]
    capacity: Decimal  # 1 for a thread or a GPU (more where the operator overcommits CPUs)


_QUANTUM = Decimal("0.001")


def split_exact(
    total: Decimal, weights: list[int], *, quantum: Decimal = _QUANTUM
) -> list[Decimal]:
    """*total* split in proportion to *weights*, rounded down to *quantum*, the rest to the first.

    The parts add up to *total* exactly, so capacity never drifts by rounding.
    """
    whole = sum(weights)
    if not weights:
        return []
    if whole <= 0:
        return [total] + [Decimal(0)] * (len(weights) - 1)
    parts = [(total * w / whole).quantize(quantum, rounding=ROUND_DOWN) for w in weights]
    parts[0] += total - sum(parts)
    return [_tidy(p) for p in parts]


def _tidy(value: Decimal) -> Decimal:
    """``1.000`` -> ``1``, ``2.500`` -> ``2.5``: what JSON and messages show."""
    integral = value.to_integral_value()
    return integral if value == integral else value.normalize()
