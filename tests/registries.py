"""Real registries for the tests: the open one on 127.0.0.1:5000 (``scripts/services``), and
a second ``docker-registry`` with htpasswd (basic) auth that a test starts on a free
loopback port; plus a small writer of images through the registry API (config, one
layer, manifest, manifest list) for content Docker cannot push (other architectures).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from .services import require_service

__all__ = [
    "CACHED_STORAGE",
    "KERNEL_LABELS",
    "OPEN_REGISTRY",
    "AuthRegistry",
    "open_auth_registry",
    "require_open_registry",
    "unique",
    "upload_image",
    "upload_index",
]

OPEN_REGISTRY = os.environ.get("BACKENDAI_TEST_REGISTRY_URL", "http://127.0.0.1:5000")
KERNEL_LABELS = {
    "ai.backend.kernelspec": "1",
    "ai.backend.features": "batch query uid-match",
    "ai.backend.resource.min.cpu": "1",
    "ai.backend.resource.min.mem": "256m",
}
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


# Storage kept between runs for the registry that holds the kernel image (~150 MB to push).
CACHED_STORAGE = (
    Path(os.environ.get("BACKENDAI_SERVICES_DIR", "/var/lib/backendai-services"))
    / "registry-auth-test-data"
)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _answers(url: str, auth: tuple[str, str] | None = None) -> int | None:
    try:
        return httpx.get(f"{url}/v2/", auth=auth, timeout=3).status_code
    except httpx.HTTPError:
        return None


def require_open_registry() -> str:
    require_service(_answers(OPEN_REGISTRY) == 200, f"a Docker registry at {OPEN_REGISTRY}")
    return OPEN_REGISTRY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class AuthRegistry:
    url: str
    username: str
    password: str

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


def _prepare(state_dir: Path, storage: Path | None) -> tuple[AuthRegistry, list[str]]:
    """An htpasswd file, a config on a free loopback port; the registry and its command."""
    exe, htpasswd = shutil.which("docker-registry"), shutil.which("htpasswd")
    require_service(exe is not None, "the docker-registry binary (apt-get install docker-registry)")
    require_service(htpasswd is not None, "htpasswd (apt-get install apache2-utils)")
    assert exe is not None
    assert htpasswd is not None
    user, password = "alice", uuid.uuid4().hex
    line = subprocess.run(
        [htpasswd, "-Bbn", user, password], check=True, capture_output=True, text=True
    ).stdout
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "htpasswd").write_text(line)
    port = _free_port()
    (state_dir / "config.yml").write_text(
        f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage or state_dir / "data"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
auth:
  htpasswd:
    realm: backendai-test
    path: {state_dir / "htpasswd"}
"""
    )
    return AuthRegistry(f"http://127.0.0.1:{port}", user, password), [
        exe,
        "serve",
        str(state_dir / "config.yml"),
    ]


@asynccontextmanager
async def open_auth_registry(
    state_dir: Path, storage: Path | None = None
) -> AsyncIterator[AuthRegistry]:
    """Debian's docker-registry with htpasswd auth on a free loopback port, until exit.

    *storage* (default: inside *state_dir*) may be kept between runs, so that big layers
    (the kernel image's) are pushed once per machine rather than once per run.
    """
    registry, argv = await trio.to_thread.run_sync(_prepare, state_dir, storage)
    log_path = trio.Path(state_dir / "registry.log")
    with open(state_dir / "registry.log", "wb") as log:  # noqa: ASYNC230 (a local file, once)
        proc = await trio.lowlevel.open_process(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        with trio.fail_after(15):
            while await trio.to_thread.run_sync(_answers, registry.url) != 401:
                assert proc.poll() is None, await log_path.read_text()
                await trio.sleep(0.05)  # another process comes up: there is no event to await
        yield registry
    finally:
        proc.terminate()
        with trio.move_on_after(5, shield=True):
            await proc.wait()
        if proc.poll() is None:
            proc.kill()


def _layer(content: bytes) -> tuple[bytes, str]:
    """A gzipped tar with one file; returns it and its diff id (digest of the plain tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("opt/backendai-test.bin")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


async def _put_blob(client: httpx.AsyncClient, repo: str, blob: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    started = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]  # carries the upload's state in its query
    done = await client.put(
        f"{location}{'&' if '?' in location else '?'}digest={digest}",
        content=blob,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    return digest


async def upload_image(
    url: str,
    repo: str,
    tag: str,
    *,
    arch: str = "amd64",
    labels: Mapping[str, str] = KERNEL_LABELS,
    layer_size: int = 4096,
    auth: tuple[str, str] | None = None,
) -> tuple[str, int]:
    """Push a one-layer image through the registry API; returns its manifest digest and size."""
    layer, diff_id = _layer(os.urandom(layer_size))
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": dict(labels), "Cmd": ["python3"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=30) as client:
        config_digest = await _put_blob(client, repo, config)
        layer_digest = await _put_blob(client, repo, layer)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": config_digest,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer),
                        "digest": layer_digest,
                    }
                ],
            }
        ).encode()
        put = await client.put(
            f"/v2/{repo}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": DOCKER_MANIFEST},
        )
        assert put.status_code == 201, put.text
    return put.headers["Docker-Content-Digest"], len(manifest)


async def upload_index(
    url: str,
    repo: str,
    tag: str,
    entries: Sequence[tuple[str, int, str]],
    *,
    auth: tuple[str, str] | None = None,
) -> str:
    """A manifest list naming (digest, size, architecture) entries; returns its digest."""
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for digest, size, arch in entries
            ],
        }
    ).encode()
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=30) as client:
        put = await client.put(
            f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": DOCKER_LIST}
        )
        assert put.status_code == 201, put.text
    return str(put.headers["Docker-Content-Digest"])
