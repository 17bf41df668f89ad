"""The agent's kernels: one lock per kernel over the compute backend, scratch dirs, progress events.

Operations on the same kernel are serialised (a destroy that arrives while the
create is under way waits for it, then removes the kernel); operations on
different kernels run concurrently.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from ..bus import Event, EventBus
from ..errors import InvalidAPIParameters
from ..sched import ResourceSlots
from .backend import ComputeBackend, KernelInfo, KernelSpec

__all__ = ["KernelRegistry", "parse_spec"]

log = logging.getLogger(__name__)


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
        )
    except KeyError as e:
        raise InvalidAPIParameters(f"kernel spec: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError, ArithmeticError) as e:
        raise InvalidAPIParameters(f"kernel spec: invalid value: {e}") from None


class KernelRegistry:
    def __init__(
        self, backend: ComputeBackend, bus: EventBus, agent_id: str, scratch_dir: Path
    ) -> None:
        self.backend = backend
        self.bus = bus
        self.agent_id = agent_id
        self.scratch_dir = scratch_dir
        self._locks: dict[str, trio.Lock] = {}
        self.changed = trio.Event()

    def _lock(self, kernel_id: str) -> trio.Lock:
        return self._locks.setdefault(kernel_id, trio.Lock())

    async def _progress(self, spec: KernelSpec, status: str) -> None:
        try:
            await self.bus.anycast(
                "manager",
                Event(
                    "kernel_status",
                    self.agent_id,
                    {"kernel_id": spec.kernel_id, "session_id": spec.session_id, "status": status},
                ),
            )
        except Exception as e:  # a progress hint may be lost; the RPC answer carries the outcome
            log.debug("progress event for kernel %s not sent: %s", spec.kernel_id, e)

    async def create(self, spec: KernelSpec) -> KernelInfo:
        async with self._lock(spec.kernel_id):
            await self._progress(spec, "CREATING")
            spec.ipc_dir.mkdir(parents=True, exist_ok=True)
            info = await self.backend.create(spec)
            log.info(
                "kernel %s of session %s is %s (%s)",
                spec.kernel_id,
                spec.session_id,
                info.state,
                info.backend_id,
            )
        self._notify()
        return info

    async def restart(self, spec: KernelSpec) -> KernelInfo:
        async with self._lock(spec.kernel_id):
            spec.ipc_dir.mkdir(parents=True, exist_ok=True)
            info = await self.backend.restart(spec)
            log.info("kernel %s of session %s restarted", spec.kernel_id, spec.session_id)
        self._notify()
        return info

    async def destroy(self, kernel_id: str) -> int | None:
        async with self._lock(kernel_id):
            exit_code = await self.backend.destroy(kernel_id)
            kdir = self.scratch_dir / kernel_id
            if kdir.exists():
                await trio.to_thread.run_sync(shutil.rmtree, kdir, True)
            log.info("kernel %s destroyed (exit code %s)", kernel_id, exit_code)
        self._locks.pop(kernel_id, None)
        self._notify()
        return exit_code

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()
