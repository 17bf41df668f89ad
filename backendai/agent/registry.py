"""The agent's kernels: one lock per kernel over the compute backend, scratch dirs, progress events.

Operations on the same kernel are serialised (a destroy that arrives while the
create is under way waits for it, then removes the kernel); operations on
different kernels run concurrently.  A create whose spec names a registry pulls
the image first when the backend lacks it (PULLING, with progress, then PREPARED).
Where the backend pins kernels, a create first takes the kernel's CPUs, memory
nodes and GPUs from the :class:`~backendai.agent.allocator.Allocator`, and a
destroy gives them back.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from ..bus import Event, EventBus
from ..errors import InvalidAPIParameters, KernelError
from ..hw import Topology
from ..registry import RegistrySpec, parse_registry_spec
from ..sched import ResourceSlots
from .allocator import Allocator
from .backend import ComputeBackend, KernelInfo, KernelSpec
from .pulling import PullTracker, pull_image, timeout_error
from .runner_client import runner_request

__all__ = ["KernelRegistry", "parse_spec"]

log = logging.getLogger(__name__)
# How long a started kernel's runner may take to answer its first ping.
RUNNER_READY_TIMEOUT = 30.0
# Seconds a pull may take when the manager's spec does not say (manager.pull_timeout's default).
DEFAULT_PULL_TIMEOUT = 1800.0


def _registry(raw: Any) -> RegistrySpec | None:
    return None if raw is None else parse_registry_spec(raw, where="kernel spec: registry")


def _mounts(raw: Any) -> tuple[tuple[str, str, bool], ...]:
    out = []
    for m in raw or []:
        host, target, mode = str(m["host_path"]), str(m["container_path"]), m.get("mode", "ro")
        if not host.startswith("/") or not target.startswith("/") or mode not in ("ro", "rw"):
            raise InvalidAPIParameters(f"mounts: invalid mount {m!r}")
        out.append((host, target, mode == "ro"))
    return tuple(out)


def parse_spec(raw: Any, scratch_dir: Path) -> KernelSpec:
    """Validate a create request from the manager."""
    if not isinstance(raw, Mapping):
        raise InvalidAPIParameters(f"kernel spec must be an object, got {type(raw).__name__}")
    try:
        kernel_id = str(raw["kernel_id"])
        if not kernel_id or "/" in kernel_id or kernel_id.startswith("."):
            raise InvalidAPIParameters(f"kernel_id: invalid value {kernel_id!r}")
        return KernelSpec(
            kernel_id=kernel_id,
            session_id=str(raw["session_id"]),
            image=str(raw["image"]),
            slots=ResourceSlots.from_json(raw["slots"]),
            ipc_dir=scratch_dir / kernel_id / "ipc",
            cluster_role=str(raw.get("cluster_role", "main")),
            cluster_idx=int(raw.get("cluster_idx", 0)),
            environ={str(k): str(v) for k, v in (raw.get("environ") or {}).items()},
            startup_command=raw.get("startup_command"),
            mounts=_mounts(raw.get("mounts")),
            registry=_registry(raw.get("registry")),
            pull_timeout=float(raw.get("pull_timeout") or DEFAULT_PULL_TIMEOUT),
        )
    except KeyError as e:
        raise InvalidAPIParameters(f"kernel spec: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError, ArithmeticError) as e:
        raise InvalidAPIParameters(f"kernel spec: invalid value: {e}") from None


class KernelRegistry:
    def __init__(
        self,
        backend: ComputeBackend,
        bus: EventBus,
        agent_id: str,
        scratch_dir: Path,
        *,
        topology: Topology | None = None,
        allocator: Allocator | None = None,
    ) -> None:
        self.backend = backend
        self.topology = topology
        # Present for backends that pin kernels to CPUs, memory nodes and devices.
        self.allocator = allocator
        self.bus = bus
        self.agent_id = agent_id
        self.scratch_dir = scratch_dir
        self._locks: dict[str, trio.Lock] = {}
        self._image_locks: dict[str, trio.Lock] = {}
        self.changed = trio.Event()
        # Bumped when an image arrives (a pull): the heartbeat then re-reads the images.
        self.images_version = 0

    def _lock(self, kernel_id: str) -> trio.Lock:
        return self._locks.setdefault(kernel_id, trio.Lock())

    def busy(self, kernel_id: str) -> bool:
        """Whether an operation on the kernel is under way."""
        lock = self._locks.get(kernel_id)
        return lock is not None and lock.locked()

    async def _progress(
        self, spec: KernelSpec, status: str, progress: dict[str, Any] | None = None
    ) -> None:
        data: dict[str, Any] = {
            "kernel_id": spec.kernel_id,
            "session_id": spec.session_id,
            "status": status,
        }
        if progress is not None:
            data["progress"] = progress
        try:
            await self.bus.anycast("manager", Event("kernel_status", self.agent_id, data))
        except Exception as e:  # a progress hint may be lost; the RPC answer carries the outcome
            log.debug("progress event for kernel %s not sent: %s", spec.kernel_id, e)

    async def _ensure_image(self, spec: KernelSpec, registry: RegistrySpec) -> None:
        """Pull the kernel's image if this node lacks it (one pull per image at a time)."""
        async with self._image_locks.setdefault(spec.image, trio.Lock()):
            if await self.backend.has_image(spec.image):
                return
            await self._progress(spec, "PULLING")
            tracker = PullTracker(spec.image)
            try:
                with trio.fail_after(spec.pull_timeout):
                    snap = await pull_image(
                        self.backend,
                        spec.image,
                        registry,
                        tracker,
                        lambda snap: self._progress(spec, "PULLING", snap),
                    )
            except trio.TooSlowError:
                raise timeout_error(tracker, spec.pull_timeout) from None
            self.images_version += 1
            await self._progress(spec, "PREPARED", snap)

    async def create(self, spec: KernelSpec) -> KernelInfo:
        async with self._lock(spec.kernel_id):
            if spec.registry is not None:
                await self._ensure_image(spec, spec.registry)
            await self._progress(spec, "CREATING")
            spec.ipc_dir.mkdir(parents=True, exist_ok=True)
            info = await self._create_pinned(spec)
            if self.backend.name != "dummy":  # RUNNING means ready for code: the runner answers
                await self._wait_until_ready(spec)
            log.info(
                "kernel %s of session %s is %s (%s)",
                spec.kernel_id,
                spec.session_id,
                info.state,
                info.backend_id,
            )
        self._notify()
        return info

    async def _wait_until_ready(self, spec: KernelSpec) -> None:
        deadline = RUNNER_READY_TIMEOUT
        with trio.move_on_after(deadline) as waited:
            while True:
                try:
                    await runner_request(spec.ipc_dir, spec.kernel_id, {"op": "ping"}, "ping")
                    return
                except KernelError:
                    await trio.sleep(0.02)  # the runner is starting in the container
        if waited.cancelled_caught:
            raise KernelError(
                f"kernel {spec.kernel_id!r} started but its runner did not answer within "
                f"{deadline:g} s; see its logs"
            )

    async def restart(self, spec: KernelSpec) -> KernelInfo:
        async with self._lock(spec.kernel_id):
            spec.ipc_dir.mkdir(parents=True, exist_ok=True)
            if self.allocator is not None:  # a container re-made from the spec stays pinned
                spec = self.allocator.pin(spec)[0]
            info = await self.backend.restart(spec)
            log.info("kernel %s of session %s restarted", spec.kernel_id, spec.session_id)
        self._notify()
        return info

    async def destroy(self, kernel_id: str) -> int | None:
        async with self._lock(kernel_id):
            exit_code = await self.backend.destroy(kernel_id)
            if self.allocator is not None:
                self.allocator.release(kernel_id)
            kdir = self.scratch_dir / kernel_id
            if kdir.exists():
                await trio.to_thread.run_sync(shutil.rmtree, kdir, True)
            log.info("kernel %s destroyed (exit code %s)", kernel_id, exit_code)
        self._locks.pop(kernel_id, None)
        self._notify()
        return exit_code

    async def _create_pinned(self, spec: KernelSpec) -> KernelInfo:
        if self.allocator is None:
            return await self.backend.create(spec)
        pinned, fresh = self.allocator.pin(spec)  # InsufficientResources: nothing created
        try:
            info = await self.backend.create(pinned)
        except Exception:
            # Nothing runs on it (a container left half-made is an orphan the manager removes).
            if fresh:
                self.allocator.release(spec.kernel_id)
            raise
        self.allocator.settle(info)
        return info

    async def capacity(self) -> ResourceSlots:
        """What this node offers: from the hardware topology where the backend pins."""
        if self.allocator is not None:
            return self.allocator.capacity()
        return await self.backend.capacity()

    def hardware(self) -> dict[str, Any]:
        """The heartbeat's ``hardware``: the host topology (and placements, where pinned)."""
        if self.allocator is not None:
            return self.allocator.hardware()
        return self.topology.summary() if self.topology is not None else {}

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()
