"""End to end on Docker with a registry that wants a password: ``image build --push``,
register and rescan, then a session on an agent that lacks its image pulls it (PULLING
with progress events, then RUNNING); with the password changed, the next pull fails and
the session ends in ERROR with the reason and the registry's words in its history.

The agent is made to lack the image the way it happens in production: it reported the
image in a heartbeat, and the image was removed before the kernel was created.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
import trio

from backendai.agent.docker_images import push_image
from backendai.client.api import APIClient

from .cluster import Cluster, cluster_config, open_cluster, query, wait_status
from .registries import CACHED_STORAGE, AuthRegistry, open_auth_registry

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _storage(tmp_path: Path) -> Path:
    try:
        CACHED_STORAGE.mkdir(parents=True, exist_ok=True)
        return CACHED_STORAGE if os.access(CACHED_STORAGE, os.W_OK) else tmp_path / "data"
    except OSError:
        return tmp_path / "data"


def _build_derived(tag: str, context: Path) -> None:
    """An image on top of the kernel image with one layer of its own (3 MB, unique)."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "blob").write_bytes(os.urandom(3_000_000))
    (context / "Dockerfile").write_text(
        "FROM backendai/python:3.11\nCOPY blob /opt/backendai-pulltest.bin\n"
    )
    client = docker.from_env()
    try:
        client.images.build(path=str(context), tag=tag, network_mode="none", rm=True)
    finally:
        client.close()


def _layers(tag: str) -> int:
    client = docker.from_env()
    try:
        return len(client.images.get(tag).attrs["RootFS"]["Layers"])
    finally:
        client.close()


def _remove(tag: str) -> None:
    client = docker.from_env()
    try:
        client.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        pass
    finally:
        client.close()


async def _push_with_cli(reg: AuthRegistry) -> str:
    """``backendai image build python --push HOST --username U --password-stdin``."""
    argv = [sys.executable, "-m", "backendai.cli", "image", "build", "python"]
    argv += ["--push", reg.host, "--username", reg.username, "--password-stdin"]
    done = await trio.run_process(
        argv,
        stdin=f"{reg.password}\n".encode(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("backendai/python:3.11 sha256:")
    assert lines[1].startswith(f"{reg.host}/backendai/python:3.11@sha256:")
    return lines[1]


async def _agent_has(cluster: Cluster, image: str) -> None:
    with trio.fail_after(30):
        while True:
            rows = query(cluster.config, "SELECT images FROM agents")
            names = rows[0][0] if rows else []
            if image in (json.loads(names) if isinstance(names, str) else names):
                return
            await trio.sleep(0.1)  # waiting for a heartbeat: polling the database


async def _watch(api: APIClient, name: str, seen: list[dict[str, Any]]) -> None:
    async with api.stream_events() as events:  # every session's (superadmin): it is not made yet
        async for event in events:
            data = json.loads(event.data)
            if data.get("sessionName") == name:
                seen.append({"event": event.event, **data})


async def test_a_session_pulls_its_image_with_progress_and_credentials(
    tmp_path: Path, kernel_image: str
) -> None:
    async with open_auth_registry(tmp_path / "registry", _storage(tmp_path)) as reg:
        try:
            await _push_with_cli(reg)
        finally:  # the push tagged the kernel image for this registry, whose port is gone next
            await trio.to_thread.run_sync(_remove, f"{reg.host}/backendai/python:3.11")
        image = f"{reg.host}/backendai/pulltest:{uuid.uuid4().hex[:10]}"
        await trio.to_thread.run_sync(_build_derived, image, tmp_path / "context")
        await trio.to_thread.run_sync(
            lambda: push_image(image, image, username=reg.username, password=reg.password)
        )
        config = cluster_config(tmp_path / "data", agent={"backend": "docker"})
        try:
            async with open_cluster(config) as cluster:
                await _run(cluster, reg, image)
        finally:
            await trio.to_thread.run_sync(_remove, image)


async def _run(cluster: Cluster, reg: AuthRegistry, image: str) -> None:
    api = cluster.api
    body = {"name": "lab", "url": reg.url, "username": reg.username, "password": reg.password}
    await api.request("POST", "/admin/registries", json=body)
    (result,) = (await api.request("POST", "/admin/registries/lab/rescan")).json()["results"]
    assert result["images"] >= 2  # the kernel image and ours
    await _agent_has(cluster, image)
    await trio.to_thread.run_sync(_remove, image)  # the agent no longer has it

    seen: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch, api, "pulled", seen)
        await trio.sleep(0.2)  # let the event stream open before the session starts
        created = await api.create_session(image, "pulled", max_wait=120)
        assert created["status"] == "RUNNING", created
        nursery.cancel_scope.cancel()
    names = [e["event"] for e in seen]
    assert "session_pulling" in names
    assert "session_started" in names
    progress = [e["progress"] for e in seen if e["event"] == "session_pulling" and "progress" in e]
    assert progress, names
    final = progress[-1]
    assert final["image"] == image
    layers = await trio.to_thread.run_sync(_layers, "backendai/python:3.11")
    assert final["layersTotal"] == final["layersDone"] == layers + 1
    assert final["bytesDone"] >= 3_000_000
    assert final["bytesTotal"] >= 3_000_000
    history = (await api.request("GET", f"/session/{created['sessionId']}/status-history")).json()
    kernel_steps = [h["status"] for h in history["result"] if h["kernelId"]]
    steps = ("PULLING", "PREPARED", "CREATING", "RUNNING")
    assert list(dict.fromkeys(s for s in kernel_steps if s in steps)) == list(steps)
    assert any(
        f"pulled {image}: {layers + 1}/{layers + 1} layers" in (h.get("detail") or "")
        for h in history["result"]
    )
    await api.destroy_session("pulled")
    await wait_status(api, "pulled", "TERMINATED", deadline=60)

    # The registry's password changed: the next pull is refused, and the session says why.
    query(cluster.config, "UPDATE registries SET password = 'rotated-away'")
    await _agent_has(cluster, image)  # the agent reported it after pulling
    await trio.to_thread.run_sync(_remove, image)
    failed = await api.create_session(image, "refused", max_wait=60)
    assert failed["status"] == "ERROR"
    info = await api.get_session("refused")
    assert info["statusInfo"] == "image-auth-failed"
    history = (await api.request("GET", f"/session/{failed['sessionId']}/status-history")).json()
    errors = [h for h in history["result"] if h["status"] == "ERROR" and h.get("detail")]
    assert errors
    assert "refused user 'alice'" in errors[0]["detail"]
    assert "rotated-away" not in errors[0]["detail"]
