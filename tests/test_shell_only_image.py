"""An image without Python still gets batch mode, files and a terminal (real Docker).

The test image holds nothing but ``/bin/sh`` (dash) and the C library it links,
copied out of the stock image and ``docker import``-ed: no Python, no coreutils,
no busybox.  The agent lends the runner a Python runtime (``agent/runtime.py``).
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
import trio
from trio_websocket import open_websocket_url

from backendai.agent.runtime import RunnerRuntime
from backendai.errors import ImageNotFound
from tests.exec_agent import SECRET, ExecAgent, open_exec_agent
from tests.test_agent_files_pty import read_until, stdin, ws_send

SHELL_IMAGE = "backendai-test/shell-only:1"
# Run in the stock image with the new root file system at /out.
_COPY_SHELL = r"""
set -e
mkdir -p /out/bin /out/tmp /out/etc
cp -L /bin/dash /out/bin/sh
for f in $(ldd /bin/dash | awk '/=>/ {print $3}') /lib64/ld-linux-x86-64.so.2; do
  mkdir -p "/out$(dirname "$f")"; cp -L "$f" "/out$f"
done
"""


def build_shell_image(source: str) -> str:
    client = docker.from_env()
    try:
        try:
            client.images.get(SHELL_IMAGE)
            return SHELL_IMAGE
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory(prefix="bai-shroot-") as root:
            client.containers.run(
                source,
                ["/bin/sh", "-c", _COPY_SHELL],
                user="0",
                network_mode="none",
                volumes={root: {"bind": "/out", "mode": "rw"}},
                remove=True,
            )
            data = io.BytesIO()
            with tarfile.open(fileobj=data, mode="w") as tar:
                tar.add(root, arcname=".")
            repository, tag = SHELL_IMAGE.split(":")
            client.api.import_image_from_data(data.getvalue(), repository=repository, tag=tag)
        return SHELL_IMAGE
    finally:
        client.close()


@pytest.fixture(scope="session")
def shell_image(kernel_image: str) -> str:
    return build_shell_image(kernel_image)


@pytest.fixture
async def agent(shell_image: str) -> AsyncIterator[ExecAgent]:
    async with open_exec_agent("docker") as opened:
        yield opened


async def test_batch_runs_through_the_images_shell(agent: ExecAgent, shell_image: str) -> None:
    kid = await agent.kernel(image=shell_image)
    probe = "for p in python3 python ls cat busybox; do command -v $p || echo no-$p; done"
    _, out, _ = await agent.run(kid, "batch", options={"exec": probe})
    assert out.split() == ["no-python3", "no-python", "no-ls", "no-cat", "no-busybox"]
    upload = await agent.http.post(
        f"/v1/kernels/{kid}/files", params={"path": "in.txt"}, content=b"alpha\nbeta\n"
    )
    assert upload.status_code == 201
    options = {
        "build": "echo building in $PWD",
        "exec": 'while read -r line; do echo "got $line"; done < in.txt; echo oops >&2; exit 3',
    }
    results, out, err = await agent.run(kid, "batch", options=options)
    assert [(r["status"], r["exit_code"]) for r in results if r["status"] != "continued"] == [
        ("build-finished", 0),
        ("finished", 3),
    ]
    assert out == "building in /home/work\ngot alpha\ngot beta\n"
    assert err == "oops\n"
    listing = (await agent.http.get(f"/v1/kernels/{kid}/files", params={"path": "."})).json()
    assert [f["name"] for f in listing["files"]] == ["in.txt"]


async def test_query_mode_says_the_image_has_no_python(agent: ExecAgent, shell_image: str) -> None:
    kid = await agent.kernel(image=shell_image)
    resp = await agent.post(
        f"/v1/kernels/{kid}/execute", {"mode": "query", "run_id": "q", "code": "print(1)"}
    )
    assert resp.status_code == 400
    assert "query mode needs Python, and this kernel's image has no python3" in resp.json()["msg"]
    _, out, _ = await agent.run(kid, "batch", options={"exec": "echo still fine"})
    assert out == "still fine\n"


async def test_terminal_in_a_shell_only_image(agent: ExecAgent, shell_image: str) -> None:
    kid = await agent.kernel(image=shell_image)
    url = f"ws://{agent.url.removeprefix('http://')}/v1/kernels/{kid}/pty"
    async with open_websocket_url(url, extra_headers=[("Authorization", f"Bearer {SECRET}")]) as ws:
        seen = bytearray()
        await ws_send(ws, stdin("echo shell-$((2+3)) in $PWD\n"))
        with trio.fail_after(20):
            await read_until(ws, rb"shell-5 in /home/work", seen)


def test_the_runtime_is_extracted_once(tmp_path: Path, kernel_image: str) -> None:
    client = docker.from_env()
    try:
        runtime = RunnerRuntime(tmp_path, kernel_image)
        first = runtime.ensure(client.api)
        assert (first / "lib" / "ld.so").is_file()
        assert (first / "bin" / "python3").is_file()
        assert not (first / "lib" / "python3.11" / "test").exists()
        assert runtime.ensure(client.api) == first
        missing = RunnerRuntime(tmp_path, "backendai-test/no-such-image:0")
        with pytest.raises(ImageNotFound, match="which is not on this agent"):
            missing.ensure(client.api)
    finally:
        client.close()
