"""Choose and open the agent's compute backend by name.

``agent.backend`` names an entry point of the group
``backendai.compute_backends`` (built in: ``docker``, ``dummy``, ``local``; a
third party adds its own the same way), or ``auto``: Docker if the engine
answers, else the local backend, with a loud warning.  A backend class has an
async ``open(config, *, agent_id, scratch_dir)`` classmethod.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import trio

from ..config import AgentConfig
from ..errors import BackendUnavailable, ConfigError
from .backend import ComputeBackend

__all__ = ["ENTRY_POINT_GROUP", "backend_names", "open_compute_backend"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "backendai.compute_backends"
BUILTIN: dict[str, str] = {
    "docker": "backendai.agent.docker:DockerBackend",
    "dummy": "backendai.agent.dummy:DummyBackend",
    "local": "backendai.agent.local:LocalBackend",
}
CLOSE_TIMEOUT = 5.0


def backend_names() -> list[str]:
    """Every backend name ``agent.backend`` accepts."""
    names = set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names | {"auto"})


def _load(name: str) -> Any:
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            return ep.load()
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                f"agent.backend: compute backend {name!r} ({ep.value}) cannot be loaded: {e}"
            ) from e
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    raise ConfigError(
        f"agent.backend: unknown compute backend {name!r}; known: {', '.join(backend_names())}"
    )


async def _open(name: str, config: AgentConfig, agent_id: str, scratch_dir: Path) -> ComputeBackend:
    cls = _load(name)
    backend: ComputeBackend = await cls.open(config, agent_id=agent_id, scratch_dir=scratch_dir)
    return backend


@asynccontextmanager
async def open_compute_backend(
    config: AgentConfig, *, agent_id: str, scratch_dir: Path
) -> AsyncIterator[ComputeBackend]:
    """Open the backend ``config.backend`` names; close it (kernels keep running) at exit."""
    if config.backend == "auto":
        try:
            backend = await _open("docker", config, agent_id, scratch_dir)
        except BackendUnavailable as e:
            log.warning(
                "agent.backend = auto: Docker is unavailable (%s); falling back to the local "
                "backend, which runs kernels WITHOUT isolation",
                e,
            )
            backend = await _open("local", config, agent_id, scratch_dir)
    else:
        backend = await _open(config.backend, config, agent_id, scratch_dir)
    log.info("agent %s uses compute backend %r", agent_id, backend.name)
    try:
        yield backend
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await backend.aclose()
