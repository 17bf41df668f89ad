"""DockerBackend: kernels as Docker containers, through docker-py.

docker-py is blocking; every call runs in a worker thread under one
``CapacityLimiter(agent.docker_threads)``, and its exceptions become ours here
(nothing above this module sees ``docker.errors``).  Each public method is one
thread hop running one ``_*_sync`` function.

A kernel is the container ``backendai-kernel-<kernel_id>``.  Ownership lives in
its labels (``ai.backend.owner``, ``ai.backend.agent-id``, ...), so a restarted
agent re-adopts its kernels by listing containers with its agent id.  The
container runs the kernel runner, bind-mounted read-only from this package,
with the kernel's IPC directory bind-mounted read-write; no Docker socket, never
privileged, a few capabilities dropped, ``no-new-privileges``, and CPU, memory
and pid limits from the kernel's slots.  ``docker-init`` is PID 1 (it reaps what
user code orphans), the runner runs on the image's Python or, in an image without
one, on a runtime the agent lends (:mod:`.runtime`), in ``/home/work``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import trio

from ..config import AgentConfig
from ..errors import BackendUnavailable, ConfigError, ImageNotFound, KernelError, KernelNotFound
from ..hw.capacity import detect_capacity
from ..registry import RegistrySpec
from ..sched.slots import ResourceSlots
from .backend import IPC_MOUNT, RUNNER_MOUNT, ImageInfo, KernelInfo, KernelSpec, KernelState
from .docker_images import docker_pull
from .docker_pinning import allocation_from_labels, allocation_labels, host_config_options
from .idlock import AgentIdLock
from .runtime import RunnerRuntime, needs_runtime, runner_launch

__all__ = ["DockerBackend"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RUNNER_DIR = Path(__file__).resolve().parent.parent / "kernel"
CONTAINER_PREFIX = "backendai-kernel-"
OWNER = "backendai"
PIDS_LIMIT = 4096
IMAGE_CACHE_SECONDS = 10.0
MAX_CONCURRENT_PULLS = 4
DROPPED_CAPS = ["AUDIT_WRITE", "MKNOD", "NET_RAW", "SETFCAP", "SYS_CHROOT"]
_STATES: dict[str, KernelState] = {
    "created": "creating",
    "running": "running",
    "paused": "running",
    "restarting": "running",
    "removing": "exited",
    "exited": "exited",
    "dead": "exited",
}
_EXITED_RE = re.compile(r"^Exited \((-?\d+)\)")


def container_name(kernel_id: str) -> str:
    return CONTAINER_PREFIX + kernel_id


class DockerBackend:
    """The real compute backend: one container per kernel."""

    name = "docker"
    pins_resources = True  # applies spec.allocation: cpusets, device requests, environment

    def __init__(self, config: AgentConfig, *, agent_id: str, scratch_dir: Path) -> None:
        self.config = config
        self.shares_host_network = config.network_mode == "host"
        self.agent_id = agent_id
        self.scratch_dir = scratch_dir
        self._where = config.docker_url or os.environ.get("DOCKER_HOST") or "the local socket"
        self._limiter = trio.CapacityLimiter(config.docker_threads)
        self._pull_limiter = trio.CapacityLimiter(MAX_CONCURRENT_PULLS)  # long: own threads
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._image_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        # A Python for the runner in images without one (extracted on first use).
        self._runtime = RunnerRuntime(scratch_dir.parent / "runner-runtime")
        self._id_lock = AgentIdLock(self._where, agent_id)

    @classmethod
    async def open(cls, config: AgentConfig, *, agent_id: str, scratch_dir: Path) -> DockerBackend:
        """Connect and ping the engine; BackendUnavailable if it does not answer."""
        backend = cls(config, agent_id=agent_id, scratch_dir=scratch_dir)
        await backend._run("ping the engine", lambda: backend._api().ping())
        try:
            backend._id_lock.acquire()
        except ConfigError:
            await backend.aclose()
            raise
        log.info("Docker engine at %s answers; agent %s uses it", backend._where, agent_id)
        return backend

    async def aclose(self) -> None:
        self._id_lock.release()
        if self._client is not None:
            await trio.to_thread.run_sync(self._client.close, limiter=self._limiter)
            self._client = None

    # -- the ComputeBackend protocol -------------------------------------------

    async def capacity(self) -> ResourceSlots:
        return await detect_capacity(self.config)

    async def images(self) -> list[ImageInfo]:
        return await self._run("list images", self._images_sync)

    async def has_image(self, name: str) -> bool:
        return await self._run(f"inspect image {name!r}", self._has_image_sync, name)

    async def pull(
        self, name: str, registry: RegistrySpec, feed: Callable[[Mapping[str, Any]], None]
    ) -> None:
        await docker_pull(self._api, name, registry, feed, self._pull_limiter)
        self._image_cache.pop(name, None)

    async def create(self, spec: KernelSpec) -> KernelInfo:
        return await self._run(f"create kernel {spec.kernel_id!r}", self._create_sync, spec)

    async def destroy(self, kernel_id: str) -> int | None:
        return await self._run(f"destroy kernel {kernel_id!r}", self._destroy_sync, kernel_id)

    async def restart(self, spec: KernelSpec) -> KernelInfo:
        return await self._run(f"restart kernel {spec.kernel_id!r}", self._restart_sync, spec)

    async def list(self) -> list[KernelInfo]:
        return await self._run("list kernels", self._list_sync)

    async def inspect(self, kernel_id: str) -> KernelInfo:
        attrs = await self._run(f"inspect kernel {kernel_id!r}", self._inspect_sync, kernel_id)
        return self._info_from_inspect(attrs)

    async def logs(self, kernel_id: str) -> str:
        return await self._run(f"read logs of kernel {kernel_id!r}", self._logs_sync, kernel_id)

    # -- the thread side -------------------------------------------------------

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run *fn* in a worker thread, translating docker-py errors into ours."""
        try:
            return await trio.to_thread.run_sync(partial(fn, *args), limiter=self._limiter)
        except docker.errors.APIError as e:
            raise KernelError(f"Docker could not {what}: {e.explanation or e}") from e
        except requests.exceptions.RequestException as e:
            raise BackendUnavailable(f"Docker engine at {self._where} does not answer: {e}") from e
        except docker.errors.DockerException as e:
            if self._client is None:
                raise BackendUnavailable(f"cannot reach Docker engine at {self._where}: {e}") from e
            raise KernelError(f"Docker could not {what}: {e}") from e

    def _api(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                if self.config.docker_url:
                    self._client = docker.DockerClient(base_url=self.config.docker_url)
                else:
                    self._client = docker.from_env()
            return self._client.api

    def _inspect_sync(self, kernel_id: str) -> dict[str, Any]:
        try:
            attrs: dict[str, Any] = self._api().inspect_container(container_name(kernel_id))
        except docker.errors.NotFound:
            raise KernelNotFound(
                f"no kernel {kernel_id!r} on agent {self.agent_id!r}: "
                f"container {container_name(kernel_id)!r} does not exist"
            ) from None
        owner = (attrs["Config"].get("Labels") or {}).get("ai.backend.agent-id")
        if owner != self.agent_id:
            raise KernelNotFound(
                f"no kernel {kernel_id!r} on agent {self.agent_id!r}: "
                f"container {container_name(kernel_id)!r} belongs to agent {owner!r}"
            )
        return attrs

    def _has_image_sync(self, name: str) -> bool:
        try:
            self._api().inspect_image(name)  # type: ignore[no-untyped-call]
        except docker.errors.NotFound:
            return False
        return True

    def _images_sync(self) -> builtins.list[ImageInfo]:
        api = self._api()
        out: builtins.list[ImageInfo] = []
        for summary in api.images(filters={"label": "ai.backend.kernelspec"}):
            tags = [t for t in summary.get("RepoTags") or [] if t != "<none>:<none>"]
            if not tags:
                continue
            attrs = api.inspect_image(summary["Id"])  # type: ignore[no-untyped-call]
            out.extend(  # every tag: a pulled image is also known by its registry name
                ImageInfo(
                    name=tag,
                    architecture=attrs.get("Architecture", ""),
                    digest=summary["Id"],
                    size_bytes=int(summary.get("Size", 0)),
                    labels=dict(summary.get("Labels") or {}),
                )
                for tag in tags
            )
        return sorted(out, key=lambda i: i.name)

    def _create_sync(self, spec: KernelSpec) -> KernelInfo:
        # The common case costs what a bare create+start does: no inspection first.  A
        # container that already exists (a retried launch, a re-adopted kernel) answers
        # 409 and is adopted instead.
        api = self._api()
        image = self._image_attrs(spec.image)
        try:
            container_id, labels = self._new_container(spec, image)
        except docker.errors.APIError as e:
            if e.status_code != 409:
                raise
            log.info("kernel %s already has a container; adopting it", spec.kernel_id)
            attrs = self._inspect_sync(spec.kernel_id)
            if not attrs["State"]["Running"]:
                api.start(attrs["Id"])
                attrs = api.inspect_container(attrs["Id"])
            return self._info_from_inspect(attrs)
        api.start(container_id)
        return self._info(labels, spec.image, container_id, "running", None)

    def _image_attrs(self, name: str) -> dict[str, Any]:
        """The image's inspection, cached briefly (its labels decide the user and limits)."""
        now = time.monotonic()
        hit = self._image_cache.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            attrs: dict[str, Any] = self._api().inspect_image(name)  # type: ignore[no-untyped-call]
        except docker.errors.NotFound:
            raise ImageNotFound(
                f"image {name!r} is not present on agent {self.agent_id!r}; "
                "pull or build it first (backendai image build python)"
            ) from None
        self._image_cache[name] = (now + IMAGE_CACHE_SECONDS, attrs)
        return attrs

    def _new_container(self, spec: KernelSpec, image: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """Create (not start) the container of *spec*; returns its id and labels."""
        api = self._api()
        image_labels = image["Config"].get("Labels") or {}
        uid_label = image_labels.get("ai.backend.user-uid")
        spec.ipc_dir.mkdir(parents=True, exist_ok=True)
        user: str | None = None
        working_dir = "/home/work"  # Docker creates it if the image lacks it
        if uid_label:
            uid = int(uid_label)
            user = str(uid)
            if os.geteuid() == 0:
                os.chown(spec.ipc_dir, uid, uid)
            elif os.geteuid() != uid:
                log.warning(
                    "cannot chown %s to uid %s; making it world-writable", spec.ipc_dir, uid
                )
                spec.ipc_dir.chmod(0o777)
        environ = {
            **spec.environ,
            **(spec.resources.environ if spec.resources else {}),
            "BACKENDAI_IPC_DIR": IPC_MOUNT,
            "BACKENDAI_KERNEL_ID": spec.kernel_id,
            "BACKENDAI_SESSION_ID": spec.session_id,
        }
        if spec.startup_command:
            environ["BACKENDAI_STARTUP_COMMAND"] = spec.startup_command
        runtime = self._runtime.ensure(api) if needs_runtime(image_labels) else None
        launch = runner_launch(image_labels, runtime)
        environ.update(launch.environ)
        cpu, mem = spec.slots["cpu"], int(spec.slots["mem"])
        host_config = api.create_host_config(
            binds={
                str(RUNNER_DIR): {"bind": RUNNER_MOUNT, "mode": "ro"},
                str(spec.ipc_dir.resolve()): {"bind": IPC_MOUNT, "mode": "rw"},
                **launch.binds,
                # Folders: read-only is the kernel's to enforce (a ro bind mount), not ours.
                **{
                    host: {"bind": target, "mode": "ro" if ro else "rw"}
                    for host, target, ro in spec.mounts
                },
            },
            network_mode=self.config.network_mode,
            nano_cpus=int(cpu * 1_000_000_000) or None,
            mem_limit=mem or None,
            memswap_limit=mem or None,
            pids_limit=PIDS_LIMIT,
            cap_drop=DROPPED_CAPS,
            security_opt=["no-new-privileges"],
            privileged=False,
            # docker-init as PID 1 reaps the orphans of user code and forwards signals.
            init=True,
            **host_config_options(spec.resources),
        )
        labels = {
            "ai.backend.owner": OWNER,
            "ai.backend.agent-id": self.agent_id,
            "ai.backend.kernel-id": spec.kernel_id,
            "ai.backend.session-id": spec.session_id,
            "ai.backend.cluster-role": spec.cluster_role,
            "ai.backend.cluster-idx": str(spec.cluster_idx),
            "ai.backend.slots": json.dumps(spec.slots.to_json()),
            "ai.backend.created-at": repr(time.time()),
            **allocation_labels(spec.allocation),
        }
        created = api.create_container(
            image=spec.image,
            command=launch.command,
            name=container_name(spec.kernel_id),
            labels=labels,
            environment=environ,
            user=user,
            working_dir=working_dir,
            host_config=host_config,
        )
        log.info("created container %s for kernel %s", created["Id"][:12], spec.kernel_id)
        return str(created["Id"]), labels

    def _restart_sync(self, spec: KernelSpec) -> KernelInfo:
        """Restart the container in place: new processes, the same filesystem."""
        try:
            attrs = self._inspect_sync(spec.kernel_id)
        except KernelNotFound:
            return self._create_sync(spec)
        api = self._api()
        api.restart(attrs["Id"], timeout=math.ceil(self.config.stop_timeout))
        return self._info_from_inspect(api.inspect_container(attrs["Id"]))

    def _destroy_sync(self, kernel_id: str) -> int | None:
        api = self._api()
        try:
            attrs = self._inspect_sync(kernel_id)
        except KernelNotFound as e:
            log.debug("destroy: %s; nothing to do", e)
            return None
        if attrs["State"]["Running"]:
            api.stop(attrs["Id"], timeout=math.ceil(self.config.stop_timeout))
            attrs = api.inspect_container(attrs["Id"])
        info = self._info_from_inspect(attrs)
        with contextlib.suppress(docker.errors.NotFound):  # removed concurrently: same outcome
            api.remove_container(attrs["Id"], v=True, force=True)
        log.info("destroyed kernel %s (exit code %s)", kernel_id, info.exit_code)
        return info.exit_code

    def _list_sync(self) -> builtins.list[KernelInfo]:
        labels = [f"ai.backend.owner={OWNER}", f"ai.backend.agent-id={self.agent_id}"]
        out = []
        for c in self._api().containers(all=True, filters={"label": labels}):
            state = _STATES.get(c.get("State", ""), "exited")
            m = _EXITED_RE.match(c.get("Status", ""))
            exit_code = int(m.group(1)) if m and state == "exited" else None
            out.append(self._info(c.get("Labels") or {}, c["Image"], c["Id"], state, exit_code))
        return out

    def _logs_sync(self, kernel_id: str) -> str:
        attrs = self._inspect_sync(kernel_id)
        raw: bytes = self._api().logs(attrs["Id"], stdout=True, stderr=True)
        return raw.decode("utf-8", errors="replace")

    def _info_from_inspect(self, attrs: dict[str, Any]) -> KernelInfo:
        st = attrs["State"]
        state = _STATES.get(st.get("Status", ""), "exited")
        exit_code = int(st["ExitCode"]) if state == "exited" else None
        cfg = attrs["Config"]
        return self._info(cfg.get("Labels") or {}, cfg["Image"], attrs["Id"], state, exit_code)

    @staticmethod
    def _info(
        labels: dict[str, str], image: str, cid: str, state: KernelState, exit_code: int | None
    ) -> KernelInfo:
        return KernelInfo(
            kernel_id=labels["ai.backend.kernel-id"],
            session_id=labels.get("ai.backend.session-id", ""),
            image=image,
            state=state,
            slots=ResourceSlots.from_json(json.loads(labels.get("ai.backend.slots", "{}"))),
            backend_id=cid,
            created_at=float(labels.get("ai.backend.created-at", "0")),
            exit_code=exit_code,
            allocation=allocation_from_labels(labels),
        )
