"""The ComputeBackend conformance suite, run against docker, local and dummy.

Docker tests use the real engine and the stock image ``backendai/python:3.11``
(built once by the ``kernel_image`` fixture); without an engine they skip
locally and fail in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import psutil
import pytest
import trio

from backendai.agent.backend import IPC_MOUNT, RUNNER_MOUNT, ComputeBackend, KernelSpec
from backendai.agent.backends import open_compute_backend
from backendai.agent.docker import DockerBackend
from backendai.agent.dummy import DummyBackend
from backendai.agent.local import LocalBackend
from backendai.config import AgentConfig
from backendai.errors import BackendUnavailable, ConfigError, ImageNotFound, KernelNotFound
from backendai.sched.slots import ResourceSlots
from tests.conftest import docker_answers, runner_request, wait_for_path

BACKENDS: dict[str, type[DockerBackend] | type[LocalBackend] | type[DummyBackend]] = {
    "docker": DockerBackend,
    "local": LocalBackend,
    "dummy": DummyBackend,
}
# Backends whose kernels run the kernel runner (dummy kernels are records in memory, and
# live in one backend instance only: no re-adoption).
RUNNING = pytest.mark.parametrize("kind", ["docker", "local"], indirect=True)
IMAGE = "backendai/python:3.11"
TIMEOUT = 30.0
CONFIG = AgentConfig(
    network_mode="none", stop_timeout=3.0, dummy_create_delay=0.0, dummy_destroy_delay=0.0
)
SLOTS = ResourceSlots.parse({"cpu": "0.5", "mem": "256m"})


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Short: a unix socket path must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="bai-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent_id() -> str:
    return f"test-agent-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=sorted(BACKENDS))
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("kernel_image")
    return str(request.param)


@pytest.fixture
async def backend(kind: str, agent_id: str, scratch: Path) -> AsyncIterator[ComputeBackend]:
    opened = await BACKENDS[kind].open(CONFIG, agent_id=agent_id, scratch_dir=scratch)
    try:
        yield opened
    finally:
        with trio.move_on_after(TIMEOUT, shield=True):
            for info in await opened.list():
                await opened.destroy(info.kernel_id)
            await opened.aclose()


def make_spec(scratch: Path, *, image: str = IMAGE, startup: str | None = None) -> KernelSpec:
    kernel_id = uuid.uuid4().hex[:12]
    return KernelSpec(
        kernel_id=kernel_id,
        session_id=f"sess-{kernel_id}",
        image=image,
        slots=SLOTS,
        ipc_dir=scratch / kernel_id / "ipc",
        environ={"GREETING": "hello"},
        startup_command=startup,
    )


async def wait_for_log(backend: ComputeBackend, kernel_id: str, text: str) -> str:
    with trio.fail_after(TIMEOUT):
        while text not in (logs := await backend.logs(kernel_id)):  # noqa: ASYNC110 (polling a process)
            await trio.sleep(0.05)
    return logs


# -- the contract, for every backend -------------------------------------------


async def test_create_is_idempotent(backend: ComputeBackend, scratch: Path) -> None:
    spec = make_spec(scratch)
    first = await backend.create(spec)
    again = await backend.create(spec)
    assert first.kernel_id == again.kernel_id == spec.kernel_id
    assert first.backend_id == again.backend_id
    assert again.state == "running"
    assert [k.kernel_id for k in await backend.list()] == [spec.kernel_id]


async def test_list_and_inspect_describe_the_kernel(backend: ComputeBackend, scratch: Path) -> None:
    spec = make_spec(scratch)
    created = await backend.create(spec)
    (listed,) = await backend.list()
    inspected = await backend.inspect(spec.kernel_id)
    for info in (created, listed, inspected):
        assert info.kernel_id == spec.kernel_id
        assert info.session_id == spec.session_id
        assert info.image == IMAGE
        assert info.slots == SLOTS
        assert info.state == "running"
        assert info.exit_code is None
        assert info.created_at == created.created_at > 0


@RUNNING
async def test_runner_answers_ping(backend: ComputeBackend, scratch: Path) -> None:
    spec = make_spec(scratch)
    await backend.create(spec)
    with trio.fail_after(TIMEOUT):
        await wait_for_path(spec.ipc_dir / "runner.sock")
    reply = await runner_request(spec.ipc_dir / "runner.sock", {"op": "ping"})
    assert reply["op"] == "pong"
    assert reply["python"].startswith("3.11")
    status = await runner_request(spec.ipc_dir / "runner.sock", {"op": "status"})
    assert (status["kernel_id"], status["session_id"]) == (spec.kernel_id, spec.session_id)


@RUNNING
async def test_logs_show_the_runner_and_startup_command(
    backend: ComputeBackend, kind: str, scratch: Path
) -> None:
    spec = make_spec(scratch, startup="echo startup says $GREETING")
    await backend.create(spec)
    logs = await wait_for_log(backend, spec.kernel_id, "startup says hello")
    socket = IPC_MOUNT if kind == "docker" else str(spec.ipc_dir)
    assert f"backendai kernel runner ready on {socket}/runner.sock" in logs


async def test_destroy_is_idempotent(backend: ComputeBackend, kind: str, scratch: Path) -> None:
    spec = make_spec(scratch)
    await backend.create(spec)
    if kind != "dummy":  # stop a runner that is up, not one still starting
        with trio.fail_after(TIMEOUT):
            await wait_for_path(spec.ipc_dir / "runner.sock")
    assert await backend.destroy(spec.kernel_id) == 0  # the runner exits 0 on SIGTERM
    assert await backend.destroy(spec.kernel_id) is None
    assert await backend.list() == []
    with pytest.raises(KernelNotFound, match=spec.kernel_id):
        await backend.inspect(spec.kernel_id)
    with pytest.raises(KernelNotFound, match=spec.kernel_id):
        await backend.logs(spec.kernel_id)


@RUNNING
async def test_create_restarts_a_kernel_that_exited(
    backend: ComputeBackend, kind: str, scratch: Path
) -> None:
    spec = make_spec(scratch)
    first = await backend.create(spec)
    with trio.fail_after(TIMEOUT):
        await wait_for_path(spec.ipc_dir / "runner.sock")
        await stop_behind_the_backends_back(kind, first.backend_id)
    (exited,) = await backend.list()
    assert (exited.state, exited.exit_code) == ("exited", 0)
    again = await backend.create(spec)
    assert again.state == "running"
    assert (await backend.inspect(spec.kernel_id)).created_at == first.created_at


async def stop_behind_the_backends_back(kind: str, backend_id: str) -> None:
    """Stop a kernel the way a crash or an operator would, without the backend."""
    if kind == "docker":
        client = docker.from_env()
        try:
            await trio.to_thread.run_sync(client.api.stop, backend_id)
        finally:
            client.close()
    else:
        pid = int(backend_id)
        os.kill(pid, signal.SIGTERM)
        while _alive(pid):  # noqa: ASYNC110 (polling another process)
            await trio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_unknown_kernel_is_not_found(backend: ComputeBackend) -> None:
    with pytest.raises(KernelNotFound, match="no-such-kernel"):
        await backend.inspect("no-such-kernel")
    assert await backend.destroy("no-such-kernel") is None


async def test_unknown_image_is_image_not_found(backend: ComputeBackend, scratch: Path) -> None:
    spec = make_spec(scratch, image="backendai/no-such-image:0.0")
    with pytest.raises(ImageNotFound, match=re.escape("backendai/no-such-image:0.0")):
        await backend.create(spec)
    assert await backend.list() == []


async def test_capacity_is_sane(backend: ComputeBackend) -> None:
    capacity = await backend.capacity()
    assert capacity["cpu"] >= 1
    assert capacity["mem"] >= 256 * 1024 * 1024


async def test_images_offer_the_python_image(backend: ComputeBackend) -> None:
    images = {image.name: image for image in await backend.images()}
    assert IMAGE in images
    assert images[IMAGE].labels["ai.backend.kernelspec"] == "1"
    assert images[IMAGE].architecture


async def test_has_image_answers_for_present_and_absent_images(backend: ComputeBackend) -> None:
    assert await backend.has_image(IMAGE)
    assert not await backend.has_image("127.0.0.1:5000/backendai/no-such-image:0")


@RUNNING
async def test_a_new_backend_readopts_the_agents_kernels(
    backend: ComputeBackend, kind: str, agent_id: str, scratch: Path
) -> None:
    spec = make_spec(scratch)
    created = await backend.create(spec)
    with trio.fail_after(TIMEOUT):
        await wait_for_path(spec.ipc_dir / "runner.sock")
    cls = BACKENDS[kind]
    await backend.aclose()  # the agent's process ended; its successor takes over its id
    successor = await cls.open(CONFIG, agent_id=agent_id, scratch_dir=scratch)
    stranger = await cls.open(CONFIG, agent_id=agent_id + "-other", scratch_dir=scratch)
    try:
        assert [k.backend_id for k in await successor.list()] == [created.backend_id]
        assert (await successor.inspect(spec.kernel_id)).state == "running"
        assert await stranger.list() == []
        with pytest.raises(KernelNotFound):
            await stranger.inspect(spec.kernel_id)
        assert await stranger.destroy(spec.kernel_id) is None  # not its kernel: untouched
        # Exit codes of a re-adopted local kernel are known only if it is our child (it is here).
        assert await successor.destroy(spec.kernel_id) in ((0,) if kind == "docker" else (0, None))
        assert await successor.list() == []
    finally:
        await successor.aclose()
        await stranger.aclose()


# -- docker only: what the container looks like ---------------------------------


@pytest.mark.parametrize("kind", ["docker"], indirect=True)
async def test_docker_container_is_labelled_limited_and_confined(
    backend: ComputeBackend, agent_id: str, scratch: Path
) -> None:
    spec = make_spec(scratch)
    created = await backend.create(spec)
    with trio.fail_after(TIMEOUT):
        await wait_for_path(spec.ipc_dir / "runner.sock")
    status = await runner_request(spec.ipc_dir / "runner.sock", {"op": "status"})
    assert status["uid"] == 1000
    client = docker.from_env()
    try:
        attrs = client.api.inspect_container(created.backend_id)
    finally:
        client.close()
    assert attrs["Name"] == f"/backendai-kernel-{spec.kernel_id}"
    labels = attrs["Config"]["Labels"]
    assert labels["ai.backend.owner"] == "backendai"
    assert labels["ai.backend.agent-id"] == agent_id
    assert labels["ai.backend.kernel-id"] == spec.kernel_id
    assert labels["ai.backend.session-id"] == spec.session_id
    assert labels["ai.backend.cluster-role"] == "main"
    assert labels["ai.backend.cluster-idx"] == "0"
    assert labels["ai.backend.slots"] == '{"cpu": "0.5", "mem": "268435456"}'
    assert float(labels["ai.backend.created-at"]) == created.created_at
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["PidsLimit"] == 4096
    assert host["NetworkMode"] == "none"
    assert host["Privileged"] is False
    assert "no-new-privileges" in host["SecurityOpt"]
    assert "NET_RAW" in host["CapDrop"]
    assert attrs["Config"]["User"] == "1000"
    assert attrs["Config"]["WorkingDir"] == "/home/work"
    assert "GREETING=hello" in attrs["Config"]["Env"]
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(mounts) == {RUNNER_MOUNT, IPC_MOUNT}  # no docker socket, nothing else
    assert mounts[RUNNER_MOUNT]["RW"] is False
    assert mounts[IPC_MOUNT]["RW"] is True
    assert mounts[IPC_MOUNT]["Source"] == str(spec.ipc_dir.resolve())


# -- choosing a backend by name -------------------------------------------------


async def test_open_compute_backend_by_name(scratch: Path) -> None:
    config = AgentConfig(backend="dummy", dummy_create_delay=0.0)
    async with open_compute_backend(config, agent_id="a1", scratch_dir=scratch) as backend:
        assert backend.name == "dummy"
        assert isinstance(backend, DummyBackend)


async def test_open_compute_backend_rejects_an_unknown_name(scratch: Path) -> None:
    config = AgentConfig(backend="kubernetes")
    with pytest.raises(ConfigError, match=r"'kubernetes'.*auto, docker, dummy, local"):
        async with open_compute_backend(config, agent_id="a1", scratch_dir=scratch):
            pass


async def test_auto_picks_docker_when_it_answers_else_local(scratch: Path) -> None:
    expected = "docker" if await trio.to_thread.run_sync(docker_answers) else "local"
    config = AgentConfig(backend="auto")
    async with open_compute_backend(config, agent_id="a1", scratch_dir=scratch) as backend:
        assert backend.name == expected


async def test_auto_falls_back_to_local_when_docker_is_down(scratch: Path) -> None:
    config = AgentConfig(backend="auto", docker_url="unix:///nonexistent/docker.sock")
    async with open_compute_backend(config, agent_id="a1", scratch_dir=scratch) as backend:
        assert backend.name == "local"


async def test_docker_backend_unavailable_names_the_engine(scratch: Path) -> None:
    config = AgentConfig(backend="docker", docker_url="unix:///nonexistent/docker.sock")
    with pytest.raises(BackendUnavailable, match=re.escape("/nonexistent/docker.sock")):
        await DockerBackend.open(config, agent_id="a1", scratch_dir=scratch)
