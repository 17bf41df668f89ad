"""The ComputeBackend seam: how an agent runs kernels.

Implementations: ``docker`` (real containers through docker-py), ``dummy``
(simulated, for scheduler scale tests) and ``local`` (kernels as local
processes, no isolation).  One conformance suite
(``tests/test_compute_backends.py``) runs against all of them.

Contract, for every implementation:

* ``create`` is idempotent by ``spec.kernel_id``: calling it again for a kernel
  that exists returns that kernel (starting it if it was only created), so a
  manager that lost track of a launch can simply ask again.
* ``destroy`` is idempotent: an unknown kernel is already destroyed.
* ``list`` returns every kernel this agent owns, including ones created by an
  earlier process of the same agent (re-adoption after a restart): ownership
  is recorded with the kernel (Docker labels, a state file), not in memory.
* Each kernel gets ``spec.ipc_dir`` at ``IPC_MOUNT`` (read-write) and the
  runner directory at ``RUNNER_MOUNT`` (read-only); the kernel runner listens
  on ``<ipc_dir>/runner.sock``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ..hw.allocation import Allocation
from ..hw.plugin import ContainerResources
from ..registry import RegistrySpec
from ..sched.slots import ResourceSlots

__all__ = [
    "IPC_MOUNT",
    "RUNNER_MOUNT",
    "ComputeBackend",
    "ImageInfo",
    "KernelInfo",
    "KernelSpec",
    "KernelState",
]

RUNNER_MOUNT = "/opt/backendai/kernel"
IPC_MOUNT = "/opt/backendai/ipc"

KernelState = Literal["creating", "running", "exited"]


@dataclass(frozen=True)
class KernelSpec:
    kernel_id: str
    session_id: str
    image: str
    slots: ResourceSlots
    ipc_dir: Path
    cluster_role: str = "main"
    cluster_idx: int = 0
    environ: Mapping[str, str] = field(default_factory=dict)
    # Folders to bind: (host path, container path, read-only).
    mounts: tuple[tuple[str, str, bool], ...] = ()
    startup_command: str | None = None
    # Where to pull the image from when this node lacks it (None: it must be present),
    # and how long that pull may take.
    registry: RegistrySpec | None = None
    pull_timeout: float = 1800.0
    # The units this kernel holds (CPUs, memory nodes, GPUs) and what its container gets for
    # them (cpusets, device requests, environment); None where the backend does not pin.
    allocation: Allocation | None = None
    resources: ContainerResources | None = None


@dataclass(frozen=True)
class KernelInfo:
    kernel_id: str
    session_id: str
    image: str
    state: KernelState
    slots: ResourceSlots
    backend_id: str  # container id, pid, ...
    created_at: float
    exit_code: int | None = None
    allocation: Allocation | None = None  # as recorded with the kernel (pinning backends)


@dataclass(frozen=True)
class ImageInfo:
    name: str  # canonical "repo:tag"
    architecture: str
    digest: str
    size_bytes: int
    labels: Mapping[str, str]


class ComputeBackend(Protocol):
    name: str
    # Whether create() applies ``spec.allocation`` (pins CPUs, memory nodes, devices) and
    # list() reports it; only then does the agent allocate the host's devices to kernels.
    pins_resources: bool
    # Whether kernels listen on this host's own network (apps are reached directly), or in
    # a network of their own (apps are forwarded through the kernel runner).
    shares_host_network: bool

    async def capacity(self) -> ResourceSlots:
        """What this node offers to kernels (cpu, mem, ...)."""
        ...

    async def images(self) -> list[ImageInfo]:
        """Kernel images present on this node."""
        ...

    async def has_image(self, name: str) -> bool:
        """Whether image *name* is present on this node now."""
        ...

    async def pull(
        self, name: str, registry: RegistrySpec, feed: Callable[[Mapping[str, Any]], None]
    ) -> None:
        """Pull image *name* from *registry*, calling *feed* with each Docker-style progress
        message (``{"id": layer, "status": ..., "progressDetail": {...}}``) in the Trio
        thread; *feed* raises on an error message.  Raises ImagePullError."""
        ...

    async def create(self, spec: KernelSpec) -> KernelInfo:
        """Create and start a kernel; idempotent by kernel id.  Raises ImageNotFound."""
        ...

    async def destroy(self, kernel_id: str) -> int | None:
        """Stop and remove a kernel; idempotent.  Returns its exit code where known."""
        ...

    async def restart(self, spec: KernelSpec) -> KernelInfo:
        """Restart the kernel's processes, keeping its files where the backend can."""
        ...

    async def list(self) -> list[KernelInfo]:
        """Every kernel this agent owns, including those of an earlier agent process."""
        ...

    async def inspect(self, kernel_id: str) -> KernelInfo:
        """One kernel.  Raises KernelNotFound."""
        ...

    async def logs(self, kernel_id: str) -> str:
        """The kernel's combined output so far.  Raises KernelNotFound."""
        ...

    async def aclose(self) -> None:
        """Release client resources; kernels keep running."""
        ...
