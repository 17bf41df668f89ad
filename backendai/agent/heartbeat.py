"""Heartbeats: the agent tells the managers who it is, what it offers and what it runs."""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import trio

from .. import __version__
from ..bus import Event
from ..config import AgentConfig
from ..hw.arch import host_architecture, normalize_arch
from .backend import ImageInfo
from .registry import KernelRegistry

__all__ = ["build_heartbeat", "serve_heartbeat"]

log = logging.getLogger(__name__)
IMAGE_REFRESH_INTERVAL = 30.0


async def build_heartbeat(
    registry: KernelRegistry,
    config: AgentConfig,
    rpc_addr: str,
    capacity: dict[str, str],
    images: list[ImageInfo],
) -> dict[str, Any]:
    at = time.time()
    kernels = await registry.backend.list()
    return {
        "agent_id": registry.agent_id,
        "rpc_addr": rpc_addr,
        "resource_group": config.resource_group,
        "architecture": host_architecture(),
        "backend": registry.backend.name,
        "version": __version__,
        "capacity": capacity,
        "hardware": registry.hardware(),
        "images": [
            {
                "name": i.name,
                "architecture": normalize_arch(i.architecture),
                "digest": i.digest,
                "size_bytes": i.size_bytes,
                "labels": dict(i.labels),
            }
            for i in images
        ],
        "kernels": [
            # A kernel under an operation (create, restart, destroy) may look exited for a
            # moment; it is reported as in transition, not as ended.
            {
                "kernel_id": k.kernel_id,
                "state": "creating" if registry.busy(k.kernel_id) else k.state,
                "exit_code": k.exit_code,
            }
            for k in kernels
        ],
        "at": at,
    }


async def serve_heartbeat(
    registry: KernelRegistry,
    config: AgentConfig,
    rpc_addr: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    capacity = (await registry.capacity()).to_json()
    images: list[ImageInfo] = []
    images_at = -IMAGE_REFRESH_INTERVAL
    images_version = registry.images_version
    first = True
    while True:
        try:
            stale = trio.current_time() - images_at >= IMAGE_REFRESH_INTERVAL
            if stale or images_version != registry.images_version:  # a pull brought one
                images_version = registry.images_version
                images = await registry.backend.images()
                images_at = trio.current_time()
            hb = await build_heartbeat(registry, config, rpc_addr, capacity, images)
            await registry.bus.anycast("manager", Event("agent_heartbeat", registry.agent_id, hb))
            if first:
                log.info(
                    "agent %s sent its first heartbeat: %d images, %d kernels",
                    registry.agent_id,
                    len(images),
                    len(hb["kernels"]),
                )
        except Exception:
            log.exception("heartbeat failed; retrying in %.1f s", config.heartbeat_interval)
        if first:
            task_status.started()
            first = False
        # A kernel created or destroyed is reported at once, not at the next period.
        with trio.move_on_after(config.heartbeat_interval):
            await registry.changed.wait()
