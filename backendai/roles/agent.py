"""Composition root of the agent role: compute backend, kernel registry, RPC server, heartbeats."""

from __future__ import annotations

import logging
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import NoReturn

import trio

from ..agent.allocator import open_allocator
from ..agent.app_forward import AppForwarder
from ..agent.backends import open_compute_backend
from ..agent.execution import ExecutionService
from ..agent.heartbeat import serve_heartbeat
from ..agent.registry import KernelRegistry
from ..agent.rpc import create_rpc_app
from ..bus import EventBus
from ..bus.factory import use_event_bus
from ..config import Config
from ..errors import ConfigError
from ..httpserver import serve_http
from ..hw import load_topology

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
        topology = await load_topology(cfg.sysfs_root)
        allocator = await open_allocator(cfg, topology) if backend.pins_resources else None
        registry = KernelRegistry(
            backend, the_bus, agent_id, scratch, topology=topology, allocator=allocator
        )
        adopted = await backend.list()
        if adopted:
            log.info("agent %s re-adopted %d kernels from an earlier run", agent_id, len(adopted))
        if allocator is not None:
            allocator.rebuild(adopted)
        execution = ExecutionService(registry, run_idle_timeout=cfg.run_idle_timeout)
        async with trio.open_nursery() as nursery:
            await nursery.start(execution.serve)
            forwarder = None
            if not backend.shares_host_network:
                forwarder = AppForwarder(execution, cfg.host, config.cluster.secret.reveal())
                await nursery.start(forwarder.serve)
                for kernel in adopted:  # their apps' routes point at the same ports again
                    await forwarder.restore(kernel.kernel_id)
            rpc_app = create_rpc_app(
                registry,
                config.cluster.secret,
                execution,
                max_upload_bytes=cfg.max_upload_bytes,
                forwarder=forwarder,
            )
            port = await nursery.start(
                serve_http,
                rpc_app,
                cfg.host,
                cfg.port,
                f"agent {agent_id}",
            )
            rpc_addr = f"{cfg.advertised_host or cfg.host}:{port}"
            await nursery.start(serve_heartbeat, registry, cfg, rpc_addr)
            log.info("agent %s (%s backend) serving RPC at %s", agent_id, backend.name, rpc_addr)
            task_status.started(AgentInfo(agent_id, rpc_addr, backend.name))
    raise AssertionError("the agent's services returned without being cancelled")
