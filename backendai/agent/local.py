"""LocalBackend: kernels as plain local processes, with NO isolation.

For machines without Docker only: a kernel is the kernel runner started with
this agent's own Python, as this agent's user, seeing everything this agent
sees.  :meth:`LocalBackend.open` says so loudly.

Each kernel owns ``<scratch_dir>/<kernel_id>/``: ``kernel.json`` (agent id,
pid and the pid's start time, session, image, slots) and ``output.log``.  A
kernel runs in its own session (``start_new_session``), so it outlives an
agent restart; the next agent process re-adopts it by scanning the scratch
directory, and the recorded start time guards against a recycled pid.  Exit
codes are known only for kernels this process started.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psutil
import trio

from ..config import AgentConfig
from ..errors import ImageNotFound, ImagePullError, KernelError, KernelNotFound
from ..hw.capacity import detect_capacity
from ..registry import RegistrySpec
from ..sched.slots import ResourceSlots
from .backend import ImageInfo, KernelInfo, KernelSpec, KernelState

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RUNNER = Path(__file__).resolve().parent.parent / "kernel" / "runner.py"
IMAGE = f"backendai/python:{sys.version_info.major}.{sys.version_info.minor}"
_HTTP_APP = f"{shlex.quote(sys.executable)} -m http.server {{port}} --bind 127.0.0.1"
STATE_FILE = "kernel.json"
LOG_FILE = "output.log"
# Environment a local kernel inherits from the agent; everything else (secrets!) stays out.
INHERITED_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class LocalBackend:
    """Kernels as unisolated local processes (see the module docstring)."""

    name = "local"
    pins_resources = False
    shares_host_network = True

    def __init__(self, config: AgentConfig, *, agent_id: str, scratch_dir: Path) -> None:
        self.config = config
        self.agent_id = agent_id
        self.scratch_dir = scratch_dir
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._create_lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(8)

    @classmethod
    async def open(cls, config: AgentConfig, *, agent_id: str, scratch_dir: Path) -> LocalBackend:
        log.warning(
            "compute backend 'local': kernels of agent %s run as plain processes of uid %s "
            "with NO isolation; kernel code can read and change everything this agent can. "
            "Use it only on a machine you own; install Docker for isolated kernels",
            agent_id,
            os.getuid(),
        )
        await trio.Path(scratch_dir).mkdir(parents=True, exist_ok=True)
        return cls(config, agent_id=agent_id, scratch_dir=scratch_dir)

    async def aclose(self) -> None:
        self._children.clear()  # kernels keep running; a later process re-adopts them

    # -- the ComputeBackend protocol -------------------------------------------

    async def capacity(self) -> ResourceSlots:
        return await detect_capacity(self.config)

    async def images(self) -> list[ImageInfo]:
        labels = {
            "ai.backend.kernelspec": "1",
            "ai.backend.features": "batch query",
            "ai.backend.base-distro": platform.system().lower(),
            "ai.backend.runtime-type": "python",
            "ai.backend.runtime-path": sys.executable,
            "ai.backend.resource.min.cpu": "1",
            "ai.backend.resource.min.mem": "256m",
            # A plain HTTP app (the standard library's file server), for the app proxy:
            # "web" for its owner only, "web-public" for anyone.
            "ai.backend.service-ports": "web:http:8080,web-public:http:8081",
            "ai.backendai.service.web": _HTTP_APP,
            "ai.backendai.service.web-public": _HTTP_APP,
            "ai.backendai.service-public": "web-public",
        }
        arch = _ARCH.get(platform.machine(), platform.machine())
        return [ImageInfo(IMAGE, arch, f"local:{sys.executable}", 0, labels)]

    async def has_image(self, name: str) -> bool:
        return name == IMAGE

    async def pull(
        self, name: str, registry: RegistrySpec, feed: Callable[[Mapping[str, Any]], None]
    ) -> None:
        raise ImagePullError(
            f"cannot pull {name} from registry {registry.name!r}: the local backend runs "
            f"kernels as local processes and offers only {IMAGE!r}; use the docker backend",
            reason="unsupported",
        )

    async def create(self, spec: KernelSpec) -> KernelInfo:
        async with self._create_lock:
            return await self._run(self._create_sync, spec)

    async def destroy(self, kernel_id: str) -> int | None:
        return await self._run(self._destroy_sync, kernel_id)

    async def restart(self, spec: KernelSpec) -> KernelInfo:
        """A new process for the kernel (its files are not kept apart from it here)."""
        await self.destroy(spec.kernel_id)
        return await self.create(spec)

    async def list(self) -> list[KernelInfo]:
        return await self._run(self._list_sync)

    async def inspect(self, kernel_id: str) -> KernelInfo:
        return await self._run(self._inspect_sync, kernel_id)

    async def logs(self, kernel_id: str) -> str:
        await self.inspect(kernel_id)
        path = trio.Path(self.scratch_dir / kernel_id / LOG_FILE)
        try:
            return await path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- the thread side -------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(partial(fn, *args), limiter=self._limiter)

    def _read_state(self, kernel_id: str) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(
                (self.scratch_dir / kernel_id / STATE_FILE).read_text()
            )
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError as e:
            log.warning("ignoring kernel %s: unreadable %s: %s", kernel_id, STATE_FILE, e)
            return None
        return state if state.get("agent_id") == self.agent_id else None

    def _status(self, state: dict[str, Any]) -> tuple[KernelState, int | None]:
        child = self._children.get(state["kernel_id"])
        if child is not None and child.pid == state["pid"]:
            code = child.poll()
            return ("running", None) if code is None else ("exited", code)
        proc = self._process(state)
        return ("exited", None) if proc is None else ("running", None)

    def _process(self, state: dict[str, Any]) -> psutil.Process | None:
        """The kernel's live process, or None (gone, a zombie, or its pid was reused)."""
        try:
            proc = psutil.Process(state["pid"])
            if abs(proc.create_time() - state["pid_started"]) > 0.05:
                return None
            return None if proc.status() == psutil.STATUS_ZOMBIE else proc
        except psutil.Error:  # gone, or not ours to see: either way not our kernel
            return None

    def _info(self, state: dict[str, Any]) -> KernelInfo:
        status, exit_code = self._status(state)
        return KernelInfo(
            kernel_id=state["kernel_id"],
            session_id=state["session_id"],
            image=state["image"],
            state=status,
            slots=ResourceSlots.from_json(state["slots"]),
            backend_id=str(state["pid"]),
            created_at=state["created_at"],
            exit_code=exit_code,
        )

    def _inspect_sync(self, kernel_id: str) -> KernelInfo:
        state = self._read_state(kernel_id)
        if state is None:
            raise KernelNotFound(
                f"no kernel {kernel_id!r} on agent {self.agent_id!r} "
                f"(no {STATE_FILE} of this agent in {self.scratch_dir / kernel_id})"
            )
        return self._info(state)

    def _list_sync(self) -> builtins.list[KernelInfo]:
        out = []
        for path in sorted(self.scratch_dir.glob(f"*/{STATE_FILE}")):
            state = self._read_state(path.parent.name)
            if state is not None:
                out.append(self._info(state))
        return out

    def _create_sync(self, spec: KernelSpec) -> KernelInfo:
        if spec.image != IMAGE:
            raise ImageNotFound(
                f"image {spec.image!r} is not available on agent {self.agent_id!r}; "
                f"the local backend offers only {IMAGE!r}"
            )
        kernel_dir = self.scratch_dir / spec.kernel_id
        old = self._read_state(spec.kernel_id)
        if old is None and (kernel_dir / STATE_FILE).exists():
            raise KernelError(f"kernel {spec.kernel_id!r} in {kernel_dir} belongs to another agent")
        if old is not None and self._status(old)[0] == "running":
            return self._info(old)
        kernel_dir.mkdir(parents=True, exist_ok=True)
        spec.ipc_dir.mkdir(parents=True, exist_ok=True)
        (kernel_dir / "work").mkdir(exist_ok=True)
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(spec.environ)
        env["BACKENDAI_IPC_DIR"] = str(spec.ipc_dir)
        env["BACKENDAI_WORK_DIR"] = str(kernel_dir / "work")
        env["BACKENDAI_KERNEL_ID"] = spec.kernel_id
        env["BACKENDAI_SESSION_ID"] = spec.session_id
        if spec.startup_command:
            env["BACKENDAI_STARTUP_COMMAND"] = spec.startup_command
        with open(kernel_dir / LOG_FILE, "ab") as output:
            child = subprocess.Popen(
                [sys.executable, "-u", str(RUNNER)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=kernel_dir / "work",
                env=env,
                start_new_session=True,
            )
        self._children[spec.kernel_id] = child
        state = {
            "kernel_id": spec.kernel_id,
            "agent_id": self.agent_id,
            "session_id": spec.session_id,
            "image": spec.image,
            "slots": spec.slots.to_json(),
            "cluster_role": spec.cluster_role,
            "cluster_idx": spec.cluster_idx,
            "ipc_dir": str(spec.ipc_dir),
            "pid": child.pid,
            "pid_started": psutil.Process(child.pid).create_time(),
            "created_at": old["created_at"] if old else time.time(),
        }
        tmp = kernel_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.rename(kernel_dir / STATE_FILE)
        log.info("started kernel %s as local process %s", spec.kernel_id, child.pid)
        return self._info(state)

    def _destroy_sync(self, kernel_id: str) -> int | None:
        state = self._read_state(kernel_id)
        if state is None:
            return None
        child = self._children.pop(kernel_id, None)
        exit_code: int | None = None
        if child is not None and child.pid == state["pid"]:
            child.terminate()
            try:
                exit_code = child.wait(self.config.stop_timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                exit_code = child.wait()
        elif (proc := self._process(state)) is not None:
            proc.terminate()
            try:
                exit_code = proc.wait(self.config.stop_timeout)
            except psutil.TimeoutExpired:
                proc.kill()
                exit_code = proc.wait()
        else:
            exit_code = self._status(state)[1]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state["pid"], signal.SIGKILL)  # whatever the kernel left behind
        shutil.rmtree(self.scratch_dir / kernel_id, ignore_errors=True)
        log.info("destroyed kernel %s (exit code %s)", kernel_id, exit_code)
        return exit_code
