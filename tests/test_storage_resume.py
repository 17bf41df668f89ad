"""Acceptance: a 1 GiB upload survives a killed storage proxy and resumes, byte for byte."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest
import trio

from backendai.config import Secret
from backendai.vfs.tokens import TransferClaims, issue_token

from .procs import RoleProcess, free_port, role_process, write_config

pytestmark = pytest.mark.slow

SIZE = 1024**3
CHUNK = 64 * 1024 * 1024
SECRET = "resume-test-secret"
TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


def _make_source(path: Path) -> str:
    """1 GiB of random 16 MiB blocks, each different; returns the SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(SIZE // (16 * 1024 * 1024)):
            block = hashlib.sha256(str(i).encode()).digest() * (16 * 1024 * 1024 // 32)
            block = os.urandom(64) + block[64:]
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def _read(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


async def _wait_healthy(base: str, proc: RoleProcess) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        with trio.fail_after(30):
            while True:
                if not proc.alive():
                    raise AssertionError(f"storage proxy exited:\n{proc.log_tail()}")
                try:
                    if (await http.get("/v1/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)  # polling another process: no event to await


async def test_upload_resumes_after_the_proxy_is_killed(tmp_path: Path) -> None:
    port, client_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"  # the manager-facing API
    transfers = f"http://127.0.0.1:{client_port}"
    volumes = tmp_path / "volumes"
    (volumes / "local").mkdir(parents=True)
    cfg = write_config(
        tmp_path / "storage.toml",
        {
            "cluster": {"secret": SECRET, "data_dir": str(tmp_path / "data")},
            "storage": {"port": port, "client_port": client_port, "volumes_dir": str(volumes)},
        },
    )
    source = tmp_path / "source.bin"
    expected = await trio.to_thread.run_sync(_make_source, source)
    claims = TransferClaims("upload", "local", "big", "sets/one.bin", time.time() + 3600, SIZE)
    url = f"{transfers}/upload?token={issue_token(Secret(SECRET), claims)}"
    staging = volumes / "local" / ".uploads" / "big"
    final = volumes / "local" / "folders" / "big" / "sets" / "one.bin"
    with role_process("storage", cfg, tmp_path) as proc:
        await _wait_healthy(base, proc)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {SECRET}"}
        ) as mgr:
            assert (await mgr.post("/v1/folders/local", json={"id": "big"})).status_code == 201

        async def kill_midway() -> None:
            # SIGKILL once about 40% has reached the disk: no cleanup, as when a host dies.
            with trio.fail_after(300):
                while True:
                    parts = list(staging.glob("*.part")) if staging.exists() else []
                    if parts and parts[0].stat().st_size > SIZE * 2 // 5:
                        proc.kill()
                        return
                    await trio.sleep(0.05)  # watching another process's file: no event

        offset = 0
        killed_at = None
        timeout = httpx.Timeout(120.0)
        async with httpx.AsyncClient(timeout=timeout) as http, trio.open_nursery() as nursery:
            nursery.start_soon(kill_midway)
            while offset < SIZE:
                data = await trio.to_thread.run_sync(_read, source, offset, CHUNK)
                try:
                    r = await http.patch(
                        url, content=data, headers={**TUS, "Upload-Offset": str(offset)}
                    )
                except httpx.TransportError:
                    assert killed_at is None, "the connection broke twice"
                    killed_at = offset
                    assert not final.exists(), "a partial file is visible at its path"
                    proc.start()
                    await _wait_healthy(base, proc)
                    head = await http.head(url, headers=TUS)
                    offset = int(head.headers["upload-offset"])
                    # What reached the disk before the kill counts; the client goes on from there.
                    assert killed_at <= offset <= killed_at + CHUNK
                    continue
                assert r.status_code == 204, r.text
                offset = int(r.headers["upload-offset"])
        assert killed_at is not None, "the proxy was never killed mid-upload"
        assert 0 < killed_at < SIZE
        try:
            assert await trio.to_thread.run_sync(_sha256, final) == expected
            assert list(staging.iterdir()) == []
        finally:  # 2 GiB is too much to leave to pytest's kept temporary directories
            source.unlink()
            final.unlink(missing_ok=True)
