"""An allocation: which units of which slots one kernel holds, and how close they are.

It is recorded with the kernel (a Docker label) as JSON, so an agent that
restarts rebuilds its state from its containers.  The free amounts of an
agent are always *derived* (capacity minus the live allocations), never kept
as counters.  Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..sched.slots import ResourceSlots
from .units import Unit

__all__ = ["Allocation", "FreeMap", "free_map"]

# (slot, unit id) -> amount still free
FreeMap = dict[tuple[str, str], Decimal]


@dataclass(frozen=True)
class Allocation:
    policy: str
    parts: dict[str, dict[str, Decimal]]  # slot -> unit id -> amount
    nodes: tuple[int, ...] = ()  # NUMA nodes it touches
    distances: dict[str, int] = field(default_factory=dict)  # "numa" and each device slot
    nic: str = ""  # PCI address of the nearest NIC

    def slots(self) -> ResourceSlots:
        """The amounts held, per slot."""
        return ResourceSlots({s: sum(p.values(), Decimal(0)) for s, p in self.parts.items()})

    def unit_ids(self, slot: str) -> list[str]:
        return sorted(self.parts.get(slot, {}), key=_natural)

    def amounts(self) -> Iterable[tuple[tuple[str, str], Decimal]]:
        for slot, part in self.parts.items():
            for unit_id, amount in part.items():
                yield (slot, unit_id), amount

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "parts": {
                s: {u: str(a) for u, a in sorted(p.items(), key=lambda i: _natural(i[0]))}
                for s, p in sorted(self.parts.items())
            },
            "nodes": list(self.nodes),
            "distances": dict(sorted(self.distances.items())),
            "nic": self.nic,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Allocation:
        """Load :meth:`to_json`'s output; ValueError naming what is wrong otherwise."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("parts"), Mapping):
            raise ValueError(f"allocation: expected an object with 'parts', got {raw!r:.200}")
        parts: dict[str, dict[str, Decimal]] = {}
        for slot, part in raw["parts"].items():
            if not isinstance(part, Mapping):
                raise ValueError(f"allocation: parts[{slot!r}] is not an object: {part!r:.100}")
            parts[str(slot)] = {}
            for unit_id, amount in part.items():
                try:
                    value = Decimal(str(amount))
                except InvalidOperation:
                    value = Decimal("NaN")
                if not value.is_finite() or value <= 0:
                    raise ValueError(
                        f"allocation: parts[{slot!r}][{unit_id!r}] = {amount!r}; "
                        "expected a positive number"
                    )
                parts[str(slot)][str(unit_id)] = value
        try:
            nodes = tuple(int(n) for n in raw.get("nodes", ()))
            distances = {str(k): int(v) for k, v in dict(raw.get("distances", {})).items()}
        except (TypeError, ValueError) as e:
            raise ValueError(f"allocation: bad nodes or distances: {e}") from None
        return cls(str(raw.get("policy", "")), parts, nodes, distances, str(raw.get("nic", "")))


def _natural(unit_id: str) -> tuple[int, str]:
    """CPU and node ids sort as numbers, PCI addresses as text."""
    return (int(unit_id), "") if unit_id.isdigit() else (1 << 30, unit_id)


def free_map(units: Iterable[Unit], held: Iterable[Allocation]) -> FreeMap:
    """Capacity minus every live allocation, per unit (negative if overbooked)."""
    free: FreeMap = {(u.slot, u.id): u.capacity for u in units}
    for allocation in held:
        for key, amount in allocation.amounts():
            if key in free:
                free[key] -= amount
    return free
