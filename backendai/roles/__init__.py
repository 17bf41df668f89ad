"""Composition roots: each role wires its parts and serves until cancelled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from . import agent, allinone, appproxy, manager, storage

__all__ = ["ROLES"]

ROLES: dict[str, Callable[..., Awaitable[Any]]] = {
    "all": allinone.serve,
    "manager": manager.serve,
    "agent": agent.serve,
    "storage": storage.serve,
    "appproxy": appproxy.serve,
}
