"""The official client, unmodified (backend.ai-client 23.9.10), runs code and moves files against us.

An all-in-one cluster on real Docker in this process; ``backend.ai`` in its own venv as a
subprocess, configured only through its documented environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from .cluster import Cluster, client_env, cluster_config, open_cluster

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "backendai/python:3.11"


@pytest.fixture
async def cluster(tmp_path: Path, kernel_image: str):  # type: ignore[no-untyped-def]
    config = cluster_config(tmp_path / "data", agent={"backend": "docker"})
    async with open_cluster(config) as c:
        yield c


async def _official(
    official_python: Path, cluster: Cluster, *args: str, cwd: Path, stdin: bytes = b""
) -> trio.CompletedProcess[bytes]:
    env = client_env(cluster, cwd)
    cli = official_python.parent / "backend.ai"
    with trio.fail_after(120):
        return await trio.run_process(
            [str(official_python), str(cli), *args],
            env=env,
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=stdin,
        )


async def test_official_run_query_keeps_state(
    official_python: Path, cluster: Cluster, tmp_path: Path
) -> None:
    first = await _official(
        official_python,
        cluster,
        "run",
        "-t",
        "official-q",
        "-c",
        "x = 40\nprint(x + 2)",
        IMAGE,
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr.decode()
    assert "42" in first.stdout.decode()
    second = await _official(
        official_python,
        cluster,
        "run",
        "-t",
        "official-q",
        "--rm",
        "-c",
        "print(x * 2)",
        IMAGE,
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr.decode()
    assert "80" in second.stdout.decode()


async def test_official_run_batch_with_files(
    official_python: Path, cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "main.py").write_text(
        "import sys\nprint('batch says', sum(range(10)))\nsys.exit(3)\n"
    )
    r = await _official(
        official_python,
        cluster,
        "run",
        "-t",
        "official-b",
        "--rm",
        "--exec",
        "python3 main.py",
        IMAGE,
        "main.py",
        cwd=tmp_path,
    )
    out = r.stdout.decode() + r.stderr.decode()
    assert "batch says 45" in out, out
    assert "exit code = 3" in out, out


async def test_official_upload_ls_download(
    official_python: Path, cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.api.create_session(IMAGE, "official-files")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "numbers.txt").write_text("1 2 3\n")
    up = await _official(
        official_python,
        cluster,
        "session",
        "upload",
        "official-files",
        "inputs/numbers.txt",
        cwd=tmp_path,
    )
    assert up.returncode == 0, up.stderr.decode() + up.stdout.decode()
    ls = await _official(
        official_python, cluster, "session", "ls", "official-files", "inputs", cwd=tmp_path
    )
    assert ls.returncode == 0, ls.stderr.decode()
    assert "numbers.txt" in ls.stdout.decode()
    dest = tmp_path / "back"
    dest.mkdir()
    down = await _official(
        official_python,
        cluster,
        "session",
        "download",
        "official-files",
        "inputs/numbers.txt",
        "--dest",
        str(dest),
        cwd=tmp_path,
    )
    assert down.returncode == 0, down.stderr.decode() + down.stdout.decode()
    found = list(dest.rglob("numbers.txt"))
    assert found, f"nothing downloaded into {dest}: {down.stdout.decode()}"
    assert found[0].read_text() == "1 2 3\n"


async def test_official_oversize_upload_is_refused_promptly(
    official_python: Path, tmp_path: Path, kernel_image: str
) -> None:
    config = cluster_config(
        tmp_path / "data", agent={"backend": "docker"}, manager={"max_upload_bytes": 1 << 20}
    )
    async with open_cluster(config) as cluster:
        await cluster.api.create_session(IMAGE, "official-big")
        (tmp_path / "big.bin").write_bytes(os.urandom(3 << 20))
        up = await _official(
            official_python, cluster, "session", "upload", "official-big", "big.bin", cwd=tmp_path
        )
        out = up.stdout.decode() + up.stderr.decode()
        assert up.returncode != 0, out
        assert "1048576" in out, out
        ls = await _official(
            official_python, cluster, "session", "ls", "official-big", ".", cwd=tmp_path
        )
        assert ls.returncode == 0, ls.stderr.decode()
        assert "big.bin" not in ls.stdout.decode()
