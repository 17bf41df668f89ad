"""Resource slots: exact decimal amounts per slot name, with human units.

A slot is a named, countable resource: ``cpu`` (cores, fractional allowed),
``mem`` (bytes), and device slots such as ``cuda.device`` or ``cuda.shares``.
Arithmetic is exact (:class:`decimal.Decimal`), so repeated allocate/release
never drifts.  Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import InvalidAPIParameters

__all__ = [
    "KNOWN_SLOTS",
    "ResourceSlots",
    "format_amount",
    "format_bytes",
    "parse_bytes",
]

# Slot name -> unit kind.  "bytes" slots accept human units (4g, 512m).
KNOWN_SLOTS: Mapping[str, str] = {
    "cpu": "count",
    "mem": "bytes",
    "cuda.device": "count",
    "cuda.shares": "count",
    "rocm.device": "count",
}

_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_bytes(value: str | int | float | Decimal, *, where: str = "mem") -> Decimal:
    """``"4g"`` -> 4294967296; binary units (k=1024).  Errors name the value."""
    if isinstance(value, bool):
        raise InvalidAPIParameters(
            f"{where}: invalid size {value!r}; expected bytes like 4g or 512m"
        )
    if isinstance(value, int | Decimal):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(str(value))
    else:
        m = _BYTES_RE.match(value)
        if not m:
            raise InvalidAPIParameters(
                f"{where}: invalid size {value!r}; expected bytes like 4g, 512m or 1073741824"
            )
        amount = Decimal(m.group(1)) * (Decimal(1024) ** _UNITS[m.group(2).lower()])
    if not amount.is_finite():
        raise InvalidAPIParameters(
            f"{where}: invalid size {value!r}; expected a finite number of bytes"
        )
    if amount < 0:
        raise InvalidAPIParameters(f"{where}: negative size {value!r}")
    return amount.to_integral_value()


def format_bytes(value: Decimal | int) -> str:
    """4294967296 -> ``"4g"``; exact where possible, else one decimal."""
    v = Decimal(value)
    for unit in ("p", "t", "g", "m", "k"):
        scale = Decimal(1024) ** _UNITS[unit]
        if v >= scale:
            q = v / scale
            return f"{q.normalize():f}{unit}" if q == q.to_integral_value() else f"{q:.1f}{unit}"
    return f"{int(v)}"


def format_amount(name: str, value: Decimal) -> str:
    """One slot's amount for people: bytes with units, counts as plain numbers."""
    return format_bytes(value) if KNOWN_SLOTS.get(name) == "bytes" else f"{value.normalize():f}"


def _parse_amount(name: str, value: Any) -> Decimal:
    if KNOWN_SLOTS.get(name) == "bytes":
        return parse_bytes(value, where=name)
    if isinstance(value, bool):
        raise InvalidAPIParameters(f"{name}: invalid amount {value!r}; expected a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidAPIParameters(f"{name}: invalid amount {value!r}; expected a number") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidAPIParameters(f"{name}: invalid amount {value!r}; expected a number >= 0")
    return amount


class ResourceSlots(Mapping[str, Decimal]):
    """An immutable mapping slot name -> Decimal amount; missing slots are zero."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Decimal] | None = None) -> None:
        self._data = {k: v for k, v in (data or {}).items() if v != 0}

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, known: Iterable[str] = KNOWN_SLOTS) -> ResourceSlots:
        """Parse user input; unknown slot names are rejected with the known list."""
        known_set = set(known)
        out: dict[str, Decimal] = {}
        for name, value in raw.items():
            if name not in known_set:
                raise InvalidAPIParameters(
                    f"unknown resource slot {name!r}; known slots: {', '.join(sorted(known_set))}"
                )
            out[name] = _parse_amount(name, value)
        return cls(out)

    @classmethod
    def from_json(cls, raw: Mapping[str, str | int | float]) -> ResourceSlots:
        """Load what :meth:`to_json` wrote (trusted: from our database or bus)."""
        return cls({k: Decimal(str(v)) for k, v in raw.items()})

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in sorted(self._data.items())}

    def __getitem__(self, key: str) -> Decimal:
        return self._data.get(key, Decimal(0))

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __add__(self, other: Mapping[str, Decimal]) -> ResourceSlots:
        keys = set(self._data) | set(other)
        return ResourceSlots({k: self[k] + other.get(k, Decimal(0)) for k in keys})

    def __sub__(self, other: Mapping[str, Decimal]) -> ResourceSlots:
        keys = set(self._data) | set(other)
        return ResourceSlots({k: self[k] - other.get(k, Decimal(0)) for k in keys})

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResourceSlots):
            return self._data == other._data
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def fits_in(self, capacity: Mapping[str, Decimal]) -> bool:
        """True if every amount here is <= the same slot in *capacity*."""
        return all(v <= capacity.get(k, Decimal(0)) for k, v in self._data.items())

    def shortfall(self, capacity: Mapping[str, Decimal]) -> dict[str, Decimal]:
        """Slots where this exceeds *capacity*, with the amount missing."""
        return {
            k: v - capacity.get(k, Decimal(0))
            for k, v in self._data.items()
            if v > capacity.get(k, Decimal(0))
        }

    def human(self) -> str:
        """``cpu=2 mem=4g``: for messages and tables."""
        parts = [f"{k}={format_amount(k, v)}" for k, v in sorted(self._data.items())]
        return " ".join(parts) or "nothing"

    def __repr__(self) -> str:
        return f"ResourceSlots({self.human()})"
