"""Hardware facts of a node: capacity, architecture."""

from __future__ import annotations

from .arch import host_architecture, normalize_arch
from .capacity import detect_capacity, node_capacity, total_memory

__all__ = [
    "detect_capacity",
    "host_architecture",
    "node_capacity",
    "normalize_arch",
    "total_memory",
]
