"""Agent pulls against real registries: the kernel registry's PULLING progress, PREPARED, and
the reasons a pull fails (wrong credentials, missing tag, another architecture only, a
registry that is down, the pull timeout), on the dummy backend (real registry requests,
simulated download), the local backend (cannot pull) and the Docker engine."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import trio

from backendai.agent.backend import ComputeBackend, KernelSpec
from backendai.agent.docker import DockerBackend
from backendai.agent.dummy import DummyBackend
from backendai.agent.local import IMAGE as LOCAL_IMAGE
from backendai.agent.local import LocalBackend
from backendai.agent.pulling import PullTracker
from backendai.agent.registry import KernelRegistry
from backendai.bus import Event
from backendai.bus.memory import MemoryEventBus
from backendai.config import AgentConfig
from backendai.errors import ImagePullError
from backendai.hw.arch import host_architecture
from backendai.registry import RegistrySpec, parse_registry_spec
from backendai.sched.slots import ResourceSlots

from .conftest import docker_answers, require
from .registries import (
    open_auth_registry,
    require_open_registry,
    unique,
    upload_image,
    upload_index,
)

SLOTS = ResourceSlots.parse({"cpu": "1", "mem": "256m"})
HOST_ARCH = host_architecture()
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(HOST_ARCH, HOST_ARCH)
OTHER_ARCH = "arm64" if HOST_ARCH == "x86_64" else "amd64"


def registry_spec(url: str, username: str = "", password: str = "") -> RegistrySpec:
    return parse_registry_spec(
        {"name": "test", "url": url, "username": username, "password": password}
    )


@dataclass
class Agent:
    registry: KernelRegistry
    events: list[Event]
    scratch: Path

    def spec(self, image: str, source: RegistrySpec, **kw: object) -> KernelSpec:
        kid = uuid.uuid4().hex
        return KernelSpec(
            kernel_id=kid,
            session_id="session-1",
            image=image,
            slots=SLOTS,
            ipc_dir=self.scratch / kid / "ipc",
            registry=source,
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    config = AgentConfig(dummy_create_delay=0.0, dummy_pull_delay=1.2)
    backend = DummyBackend(config, agent_id="pull-agent", scratch_dir=tmp_path)
    bus = MemoryEventBus()
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    async with trio.open_nursery() as nursery:
        await nursery.start(bus.serve_anycast, "manager", "test", collect)
        yield Agent(KernelRegistry(backend, bus, "pull-agent", tmp_path), events, tmp_path)
        nursery.cancel_scope.cancel()


async def test_a_missing_image_is_pulled_with_progress_then_created(agent: Agent) -> None:
    url = require_open_registry()
    ns = unique("t")
    digest, _ = await upload_image(url, f"{ns}/kernel", "1.0", arch=DOCKER_ARCH, layer_size=200_000)
    image = f"{url.removeprefix('http://')}/{ns}/kernel:1.0"
    backend = agent.registry.backend
    assert not await backend.has_image(image)
    info = await agent.registry.create(agent.spec(image, registry_spec(url)))
    assert info.state == "running"
    statuses = [e.data["status"] for e in agent.events]
    assert statuses[0] == "PULLING"
    assert "progress" not in agent.events[0].data
    assert statuses[-2:] == ["PREPARED", "CREATING"]
    progress = [e.data["progress"] for e in agent.events if "progress" in e.data]
    assert len(progress) >= 3  # at least two while downloading, and the final one
    assert progress[0]["layersTotal"] == 1
    assert progress[0]["bytesDone"] < progress[0]["bytesTotal"]
    final = progress[-1]
    assert final["layersDone"] == 1
    assert final["bytesDone"] == final["bytesTotal"] > 200_000
    assert final["seconds"] > 1.0
    assert await backend.has_image(image)
    assert agent.registry.images_version == 1
    assert {i.name: i.digest for i in await backend.images()}[image] == digest
    agent.events.clear()
    await agent.registry.create(agent.spec(image, registry_spec(url)))  # present now: no pull
    assert [e.data["status"] for e in agent.events] == ["CREATING"]


async def test_pull_failures_carry_a_reason_and_the_registrys_words(
    agent: Agent, tmp_path: Path
) -> None:
    url = require_open_registry()
    ns = unique("t")
    host = url.removeprefix("http://")
    arm, size = await upload_image(url, f"{ns}/foreign", "single", arch=OTHER_ARCH)
    await upload_index(url, f"{ns}/foreign", "list", [(arm, size, OTHER_ARCH)])
    await upload_image(url, f"{ns}/kernel", "1.0", arch=DOCKER_ARCH)
    cases = [
        (
            f"{host}/{ns}/foreign:single",
            registry_spec(url),
            "wrong-arch",
            f"only for {'aarch64' if OTHER_ARCH == 'arm64' else 'x86_64'}; this agent is {HOST_ARCH}",
        ),
        (f"{host}/{ns}/foreign:list", registry_spec(url), "wrong-arch", "this agent is"),
        (f"{host}/{ns}/kernel:9.9", registry_spec(url), "not-found", "manifest unknown"),
        (
            "127.0.0.1:1/x/y:1",
            registry_spec("http://127.0.0.1:1"),
            "unreachable",
            "does not answer",
        ),
    ]
    async with open_auth_registry(tmp_path / "auth") as reg:
        await upload_image(reg.url, "team/kernel", "1.0", arch=DOCKER_ARCH, auth=reg.auth)
        wrong = registry_spec(reg.url, reg.username, "not-" + reg.password)
        cases.append((f"{reg.host}/team/kernel:1.0", wrong, "auth-failed", "refused user 'alice'"))
        for image, source, reason, words in cases:
            with pytest.raises(ImagePullError) as e:
                await agent.registry.create(agent.spec(image, source))
            assert (e.value.reason, image) == (reason, image)
            assert words in str(e.value)
            assert "not-" + reg.password not in str(e.value)
    assert not any(e.data["status"] == "CREATING" for e in agent.events)


async def test_a_pull_that_overruns_its_timeout_fails(agent: Agent) -> None:
    url = require_open_registry()
    ns = unique("t")
    await upload_image(url, f"{ns}/kernel", "1.0", arch=DOCKER_ARCH)
    image = f"{url.removeprefix('http://')}/{ns}/kernel:1.0"
    with pytest.raises(ImagePullError, match=r"pull timeout of 0\.3 s") as e:
        await agent.registry.create(agent.spec(image, registry_spec(url), pull_timeout=0.3))
    assert e.value.reason == "timeout"
    assert not await agent.registry.backend.has_image(image)


async def test_the_local_backend_cannot_pull(tmp_path: Path) -> None:
    backend: ComputeBackend = LocalBackend(AgentConfig(), agent_id="local", scratch_dir=tmp_path)
    assert await backend.has_image(LOCAL_IMAGE)
    assert not await backend.has_image("127.0.0.1:5000/x:1")
    with pytest.raises(ImagePullError, match="local backend") as e:
        await backend.pull("127.0.0.1:5000/x:1", registry_spec("http://127.0.0.1:5000"), print)
    assert e.value.reason == "unsupported"


async def test_docker_pulls_with_credentials_and_reports_layers(tmp_path: Path) -> None:
    require(docker_answers(), "a Docker engine")
    async with open_auth_registry(tmp_path / "auth") as reg:
        digest, _ = await upload_image(
            reg.url, "team/tiny", "1.0", arch=DOCKER_ARCH, layer_size=300_000, auth=reg.auth
        )
        image = f"{reg.host}/team/tiny:1.0"
        backend = await DockerBackend.open(
            AgentConfig(network_mode="none"), agent_id="pull-test", scratch_dir=tmp_path
        )
        try:
            wrong = registry_spec(reg.url, reg.username, "not-" + reg.password)
            with pytest.raises(ImagePullError) as e:  # the engine's own refusal, translated
                await backend.pull(image, wrong, PullTracker(image).feed)
            assert e.value.reason == "auth-failed"
            assert "not-" + reg.password not in str(e.value)
            assert not await backend.has_image(image)
            tracker = PullTracker(image)
            await backend.pull(
                image, registry_spec(reg.url, reg.username, reg.password), tracker.feed
            )
            assert await backend.has_image(image)
            snap = tracker.snapshot()
            assert snap["layersTotal"] == snap["layersDone"] == 1
            assert snap["bytesTotal"] > 300_000
            pulled = {i.name: i for i in await backend.images()}
            assert pulled[image].labels["ai.backend.kernelspec"] == "1"
            good = registry_spec(reg.url, reg.username, reg.password)
            with pytest.raises(ImagePullError) as e:
                await backend.pull(f"{reg.host}/team/tiny:nope", good, PullTracker("x").feed)
            assert e.value.reason == "not-found"
        finally:
            client = docker.from_env()
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(image, force=True)
            client.close()
            await backend.aclose()
    assert digest.startswith("sha256:")
