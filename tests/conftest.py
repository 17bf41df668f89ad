"""Shared test fixtures: the Docker kernel image, and a client for the kernel runner.

``require(condition, what)`` skips a test locally when *what* is missing, and
fails it when env ``CI`` is set: in CI the integration tests always run.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import docker
import pytest
import trio

from backendai.agent.imagebuild import build_python_image
from backendai.errors import BackendAIError

from .official_client import official_python  # noqa: F401 - a fixture for every test module
from .services import require_service

KERNEL_IMAGE = "backendai/python:3.11"
_HEADER = struct.Struct(">I")


# Skip the test unless the condition holds; with env ``CI`` set, fail it instead.
require = require_service


def docker_answers() -> bool:
    """Whether a Docker engine answers (DOCKER_HOST or the local socket)."""
    try:
        client = docker.from_env(timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def kernel_image() -> str:
    """The stock kernel image, built once if missing (debootstrap, ~1 minute)."""
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    require(docker_answers(), f"a Docker engine at {where} (set DOCKER_HOST to use another)")
    try:
        build_python_image(tag=KERNEL_IMAGE)
    except BackendAIError as e:
        require(False, f"the kernel image {KERNEL_IMAGE} (building it failed: {e})")
    return KERNEL_IMAGE


# -- talking to a kernel runner ------------------------------------------------


async def wait_for_path(path: Path) -> None:
    """Return once *path* exists (the runner renames its socket into place when ready).

    Callers bound the wait with ``trio.fail_after``.
    """
    while not await trio.Path(path).exists():  # noqa: ASYNC110 (another process makes it)
        await trio.sleep(0.02)


async def send_frame(stream: trio.abc.Stream, payload: bytes) -> None:
    await stream.send_all(_HEADER.pack(len(payload)) + payload)


async def receive_frame(stream: trio.abc.Stream) -> dict[str, Any]:
    buf = b""
    while len(buf) < _HEADER.size or len(buf) < _HEADER.size + _HEADER.unpack(buf[:4])[0]:
        chunk = await stream.receive_some()
        assert chunk, f"runner closed the connection after {len(buf)} bytes"
        buf += chunk
    message: dict[str, Any] = json.loads(buf[_HEADER.size :])
    return message


async def runner_request(socket_path: Path, message: dict[str, Any]) -> dict[str, Any]:
    """One request/reply exchange with the runner listening on *socket_path*."""
    stream = await trio.open_unix_socket(str(socket_path))
    async with stream:
        await send_frame(stream, json.dumps(message).encode())
        return await receive_frame(stream)
