"""Scheduling: resource slots and placement policies (pure), used by the manager's loop."""

from __future__ import annotations

from .placement import (
    AgentSelector,
    AgentSnapshot,
    FirstFitSelector,
    KernelRequest,
    Placement,
    get_agent_selector,
    place_session,
)
from .slots import KNOWN_SLOTS, ResourceSlots, format_bytes, parse_bytes

__all__ = [
    "KNOWN_SLOTS",
    "AgentSelector",
    "AgentSnapshot",
    "FirstFitSelector",
    "KernelRequest",
    "Placement",
    "ResourceSlots",
    "format_bytes",
    "get_agent_selector",
    "parse_bytes",
    "place_session",
]
