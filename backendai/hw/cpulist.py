"""The kernel's list format for CPU and node sets: ``0-3,8,10-11``.

Used by sysfs (``cpulist``, ``online``, ``thread_siblings_list``) and by
cgroups (``cpuset.cpus``, ``cpuset.mems``).  Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["format_cpulist", "parse_cpulist"]


def parse_cpulist(text: str, *, where: str = "cpulist") -> frozenset[int]:
    """``"0-3,8"`` -> {0, 1, 2, 3, 8}; an empty string is the empty set.

    A malformed list raises ValueError naming *where* and the text.
    """
    out: set[int] = set()
    body = text.strip()
    if not body:
        return frozenset()
    for part in body.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            raise ValueError(
                f"{where}: {text.strip()!r} is not a CPU list; expected e.g. '0-3,8'"
            ) from None
        if first < 0 or last < first:
            raise ValueError(f"{where}: bad range {part.strip()!r} in {text.strip()!r}")
        out.update(range(first, last + 1))
    return frozenset(out)


def format_cpulist(ids: Iterable[int]) -> str:
    """{0, 1, 2, 3, 8} -> ``"0-3,8"`` (the canonical, shortest form)."""
    ordered = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
