"""``backendai vfolder`` and the official client's ``backend.ai vfolder`` against a cluster.

Both CLIs run as subprocesses, configured through BACKEND_* environment variables;
the cluster (role all, dummy compute backend) runs in this process.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from .cluster import Cluster, client_env, cluster_config, open_cluster

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with open_cluster(cluster_config(tmp_path / "data")) as c:
        yield c


async def _ours(cluster: Cluster, cwd: Path, *args: str) -> trio.CompletedProcess[bytes]:
    with trio.fail_after(120):
        return await trio.run_process(
            [sys.executable, "-m", "backendai.cli", "vfolder", *args],
            env=client_env(cluster, cwd),
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def _official(
    python: Path, cluster: Cluster, cwd: Path, *args: str
) -> trio.CompletedProcess[bytes]:
    with trio.fail_after(120):
        return await trio.run_process(
            [str(python), str(python.parent / "backend.ai"), "vfolder", *args],
            env=client_env(cluster, cwd),
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=b"y\n",  # rm asks before deleting
        )


def _ok(p: trio.CompletedProcess[bytes]) -> str:
    assert p.returncode == 0, p.stderr.decode() + p.stdout.decode()
    return p.stdout.decode() + p.stderr.decode()


async def test_our_cli_round_trip_with_resume(cluster: Cluster, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 11)
    src = tmp_path / "src"
    src.mkdir()
    (src / "blob.bin").write_bytes(data)
    out = _ok(await _ours(cluster, src, "create", "cli", "--quota", "100m"))
    assert "Folder cli" in out
    # An interrupted earlier run left the first MiB on the proxy: the CLI goes on from there.
    ticket = (
        await cluster.api.request(
            "POST", "/folders/cli/request-upload", json={"path": "blob.bin", "size": len(data)}
        )
    ).json()
    async with httpx.AsyncClient() as http:
        r = await http.patch(
            ticket["url"],
            params={"token": ticket["token"]},
            content=data[: 1024 * 1024],
            headers={
                "Tus-Resumable": "1.0.0",
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "0",
            },
        )
        assert r.status_code == 204
    out = _ok(await _ours(cluster, src, "upload", "cli", "blob.bin"))
    assert f"resuming at {1024 * 1024} of {len(data)} bytes" in out
    listing = _ok(await _ours(cluster, src, "ls", "cli"))
    assert "blob.bin" in listing
    assert str(len(data)) in listing
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "blob.bin.part").write_bytes(data[:12345])  # a download cut short
    out = _ok(await _ours(cluster, dest, "download", "cli", "blob.bin"))
    assert "resuming at 12345 bytes" in out
    assert (
        hashlib.sha256((dest / "blob.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    )
    assert not (dest / "blob.bin.part").exists()
    bad = await _ours(cluster, src, "upload", "nope", "blob.bin")
    assert bad.returncode == 1
    assert "no virtual folder 'nope'" in bad.stderr.decode()
    _ok(await _ours(cluster, src, "rm", "cli", "blob.bin"))
    assert "blob.bin" not in _ok(await _ours(cluster, src, "ls", "cli"))
    _ok(await _ours(cluster, src, "rm", "cli"))
    assert "cli" not in _ok(await _ours(cluster, src, "ls")).split()


async def test_official_client_upload_ls_download(
    official_python: Path, cluster: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.bin").write_bytes(data)
    hosts = _ok(await _official(official_python, cluster, work, "list-hosts"))
    assert "Default vfolder host: local" in hosts
    _ok(await _official(official_python, cluster, work, "create", "shared-data", "local"))
    _ok(await _official(official_python, cluster, work, "upload", "shared-data", "model.bin"))
    listing = _ok(await _official(official_python, cluster, work, "ls", "shared-data"))
    assert "model.bin" in listing
    (work / "model.bin").unlink()
    started = time.monotonic()
    _ok(await _official(official_python, cluster, work, "download", "shared-data", "model.bin"))
    assert (work / "model.bin").read_bytes() == data
    assert time.monotonic() - started < 120
    info = _ok(await _official(official_python, cluster, work, "info", "shared-data"))
    assert "Number of files: 1" in info
    _ok(await _official(official_python, cluster, work, "mkdir", "-p", "shared-data", "a/b"))
    _ok(await _official(official_python, cluster, work, "mv", "shared-data", "model.bin", "a/b"))
    listing = _ok(await _official(official_python, cluster, work, "ls", "shared-data", "a/b"))
    assert "model.bin" in listing
    _ok(await _official(official_python, cluster, work, "rm", "-r", "shared-data", "a"))
    listing = _ok(await _official(official_python, cluster, work, "ls", "shared-data"))
    assert "model.bin" not in listing
    assert " a " not in listing
