"""DummyBackend: simulated kernels, for scheduler and scale tests.

Kernels are records in memory; ``create`` and ``destroy`` take
``agent.dummy_create_delay`` / ``agent.dummy_destroy_delay`` seconds of Trio
time (so ``autojump_clock`` makes thousands of fake agents cheap).  Nothing
runs: no kernel runner answers, and the "logs" are one simulated line.

It keeps the ComputeBackend contract except re-adoption: kernels live in this
instance only, so a new backend (or a restarted agent process) starts empty.
A pull is half real: the registry is asked for the image's manifest (so refused
credentials, a missing tag or a wrong architecture fail as on a real agent), and
then each layer "downloads" in ``agent.dummy_pull_delay`` seconds with progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from ..config import AgentConfig
from ..errors import ConfigError, ImageNotFound, InvalidAPIParameters, KernelNotFound
from ..hw.arch import host_architecture
from ..registry import RegistrySpec
from ..sched.slots import ResourceSlots, parse_bytes
from .backend import ImageInfo, KernelInfo, KernelSpec
from .pulling import check_platform

__all__ = ["DummyBackend"]

DEFAULT_CPU = Decimal(8)
DEFAULT_MEM = "32g"
# Progress messages per layer of a simulated pull.
PULL_STEPS = 4
IMAGE = ImageInfo(
    name="backendai/python:3.11",
    architecture="amd64",
    digest="sha256:" + "0" * 64,
    size_bytes=0,
    labels={
        "ai.backend.kernelspec": "1",
        "ai.backend.features": "batch query uid-match",
        "ai.backend.runtime-type": "python",
        "ai.backend.runtime-path": "/usr/bin/python3",
        "ai.backend.resource.min.cpu": "1",
        "ai.backend.resource.min.mem": "256m",
    },
)


class DummyBackend:
    """Simulated kernels (see the module docstring)."""

    name = "dummy"
    pins_resources = False
    shares_host_network = True

    def __init__(self, config: AgentConfig, *, agent_id: str, scratch_dir: Path) -> None:
        self.config = config
        self.agent_id = agent_id
        self.scratch_dir = scratch_dir
        self._kernels: dict[str, KernelInfo] = {}
        self._logs: dict[str, str] = {}
        self._next_pid = 1000
        self._images = {IMAGE.name: IMAGE}
        try:
            mem = parse_bytes(config.mem or DEFAULT_MEM, where="agent.mem")
        except InvalidAPIParameters as e:
            raise ConfigError(str(e)) from None
        cpu = Decimal(str(config.cpu)) if config.cpu > 0 else DEFAULT_CPU
        self._capacity = ResourceSlots({"cpu": cpu, "mem": mem})

    @classmethod
    async def open(cls, config: AgentConfig, *, agent_id: str, scratch_dir: Path) -> DummyBackend:
        return cls(config, agent_id=agent_id, scratch_dir=scratch_dir)

    async def aclose(self) -> None:
        pass

    async def capacity(self) -> ResourceSlots:
        return self._capacity

    async def images(self) -> list[ImageInfo]:
        return sorted(self._images.values(), key=lambda i: i.name)

    async def has_image(self, name: str) -> bool:
        return name in self._images

    async def pull(
        self, name: str, registry: RegistrySpec, feed: Callable[[Mapping[str, Any]], None]
    ) -> None:
        """Ask the real registry for the manifest, then simulate downloading its layers."""
        record = await check_platform(registry, name, host_architecture())
        feed({"status": f"Pulling from {record.repository}", "id": record.tag})
        layers = [(digest.partition(":")[2][:12], size) for digest, size in record.layers]
        for layer, _ in layers:
            feed({"status": "Pulling fs layer", "id": layer})
        for layer, size in layers:
            for step in range(1, PULL_STEPS + 1):
                await trio.sleep(self.config.dummy_pull_delay / PULL_STEPS)
                detail = {"current": size * step // PULL_STEPS, "total": size}
                feed({"status": "Downloading", "id": layer, "progressDetail": detail})
            feed({"status": "Pull complete", "id": layer})
        self._images[name] = ImageInfo(
            name, record.architecture, record.digest, record.size_bytes, dict(record.labels)
        )

    async def create(self, spec: KernelSpec) -> KernelInfo:
        existing = self._kernels.get(spec.kernel_id)
        if existing is not None:
            return existing
        if spec.image not in self._images:
            raise ImageNotFound(
                f"image {spec.image!r} is not present on dummy agent {self.agent_id!r}; "
                f"it has {', '.join(sorted(self._images))}"
            )
        self._next_pid += 1
        info = KernelInfo(
            kernel_id=spec.kernel_id,
            session_id=spec.session_id,
            image=spec.image,
            state="creating",
            slots=spec.slots,
            backend_id=f"dummy-{self._next_pid}",
            created_at=time.time(),
        )
        self._kernels[spec.kernel_id] = info
        await trio.sleep(self.config.dummy_create_delay)
        if spec.kernel_id not in self._kernels:  # destroyed while it was being created
            return replace(info, state="exited", exit_code=0)
        info = self._kernels[spec.kernel_id] = replace(info, state="running")
        self._logs[spec.kernel_id] = f"backendai dummy kernel {spec.kernel_id} running\n"
        return info

    async def destroy(self, kernel_id: str) -> int | None:
        if kernel_id not in self._kernels:
            return None
        await trio.sleep(self.config.dummy_destroy_delay)
        if self._kernels.pop(kernel_id, None) is None:
            return None
        self._logs.pop(kernel_id, None)
        return 0

    async def restart(self, spec: KernelSpec) -> KernelInfo:
        """A new process for the kernel (its files are not kept apart from it here)."""
        await self.destroy(spec.kernel_id)
        return await self.create(spec)

    async def list(self) -> list[KernelInfo]:
        return list(self._kernels.values())

    async def inspect(self, kernel_id: str) -> KernelInfo:
        try:
            return self._kernels[kernel_id]
        except KeyError:
            raise KernelNotFound(
                f"no kernel {kernel_id!r} on dummy agent {self.agent_id!r}"
            ) from None

    async def logs(self, kernel_id: str) -> str:
        await self.inspect(kernel_id)
        return self._logs.get(kernel_id, "")
