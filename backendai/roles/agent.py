"""Composition root of the agent role: compute backend, kernel registry, RPC server, heartbeats."""

from __future__ import annotations

import logging
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import NoReturn

import trio

from ..agent.backends import open_compute_backend
from ..agent.heartbeat import serve_heartbeat
from ..agent.registry import KernelRegistry
from ..agent.rpc import create_rpc_app
from ..bus import EventBus
from ..bus.factory import use_event_bus
from ..config import Config
from ..errors import ConfigError
from ..httpserver import serve_http

__all__ = ["AgentInfo", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentInfo:
    agent_id: str
    rpc_addr: str
    backend: str


async def serve(
    config: Config,
    *,
    bus: EventBus | None = None,
    task_status: trio.TaskStatus[AgentInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    cfg = config.agent
    if not config.cluster.secret:
        raise ConfigError(
            "cluster.secret: empty; the agent needs the cluster secret the manager uses"
        )
    agent_id = cfg.id or socket.gethostname()
    scratch = config.data_dir / "agents" / agent_id / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        the_bus = await stack.enter_async_context(use_event_bus(config.bus, bus))
        backend = await stack.enter_async_context(
            open_compute_backend(cfg, agent_id=agent_id, scratch_dir=scratch)
        )
        registry = KernelRegistry(backend, the_bus, agent_id, scratch)
        adopted = await backend.list()
        if adopted:
            log.info("agent %s re-adopted %d kernels from an earlier run", agent_id, len(adopted))
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                serve_http,
                create_rpc_app(registry, config.cluster.secret),
                cfg.host,
                cfg.port,
                f"agent {agent_id}",
            )
            rpc_addr = f"{cfg.advertised_host or cfg.host}:{port}"
            await nursery.start(serve_heartbeat, registry, cfg, rpc_addr)
            log.info("agent %s (%s backend) serving RPC at %s", agent_id, backend.name, rpc_addr)
            task_status.started(AgentInfo(agent_id, rpc_addr, backend.name))
    raise AssertionError("the agent's services returned without being cancelled")
