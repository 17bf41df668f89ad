"""Tunnels to apps through the manager (the official client's ``backend.ai app``), the apps
listing, and our ``backendai app`` command; on the local backend, whose app is the standard
library's HTTP file server."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from .apps_helpers import LOCAL_IMAGE, cluster, get
from .cluster import Cluster, client_env, wait_status

__all__ = ["cluster"]  # the fixture, imported


async def running_session(cluster: Cluster) -> str:
    created = await cluster.api.create_session(LOCAL_IMAGE, max_wait=30)
    await wait_status(cluster.api, created["sessionId"], "RUNNING", deadline=60)
    return str(created["sessionName"])


async def tunnel(cluster: Cluster, session: str, app: str, kind: str = "tcpproxy") -> object:
    path = f"/stream/session/{session}/{kind}?app={app}"
    headers = cluster.api.signed_headers("GET", path)
    return open_websocket_url(cluster.api.websocket_base + path, extra_headers=headers)


@pytest.mark.parametrize("kind", ["tcpproxy", "httpproxy"])
async def test_a_tunnel_carries_http_to_the_app(cluster: Cluster, kind: str) -> None:
    session = await running_session(cluster)
    with trio.fail_after(60):
        async with await tunnel(cluster, session, "web", kind) as ws:  # type: ignore[attr-defined]
            await ws.send_message(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            response = b""
            while b"</html>" not in response:
                response += await ws.get_message()
    assert response.startswith(b"HTTP/1.0 200 OK")
    assert b"Directory listing" in response


async def test_a_tunnel_to_an_unknown_app_says_why(cluster: Cluster) -> None:
    session = await running_session(cluster)
    with trio.fail_after(30):
        async with await tunnel(cluster, session, "vscode") as ws:  # type: ignore[attr-defined]
            message = await ws.get_message()
    assert "app: invalid value 'vscode'; the session offers: web, web-public" in message


async def test_the_official_client_opens_an_app_locally(
    cluster: Cluster, official_python: Path, tmp_path: Path
) -> None:
    session = await running_session(cluster)
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cli = official_python.parent / "backend.ai"
    env = client_env(cluster, tmp_path)
    listing = await trio.run_process(
        [str(official_python), str(cli), "apps", session],
        env=env, capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    assert listing.returncode == 0
    assert b"Service web " in listing.stdout + listing.stderr
    assert b"Service web-public " in listing.stdout + listing.stderr
    proc = await trio.lowlevel.open_process(
        [str(official_python), str(cli), "app", session, "web", "-b", f"127.0.0.1:{port}"], env=env
    )
    try:
        with trio.fail_after(60):
            while True:
                try:
                    async with httpx.AsyncClient() as client:
                        page = await client.get(f"http://127.0.0.1:{port}/", timeout=30)
                    break
                except httpx.ConnectError:
                    await trio.sleep(0.2)  # the client is still starting its listener
    finally:
        proc.terminate()
        with trio.move_on_after(10, shield=True):
            await proc.wait()
    assert page.status_code == 200
    assert "Directory listing" in page.text


async def test_backendai_app_prints_a_url_that_opens_the_app(
    cluster: Cluster, tmp_path: Path
) -> None:
    session = await running_session(cluster)
    env = client_env(cluster, tmp_path)
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "backendai.cli", "app", session, "web"],
            env=env, capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    url = done.stdout.decode().split()[-1]
    assert "backendai_token=" in url
    opened = await get(cluster.info.appproxy.port, url)
    assert opened.status_code == 302
    listing = await trio.run_process(
        [sys.executable, "-m", "backendai.cli", "app", session, "--list"],
        env=env, capture_stdout=True, check=True,
    )  # fmt: skip
    assert b"web-public" in listing.stdout
    # And an app the image does not offer: a clear error, exit code 1.
    bad = await trio.run_process(
        [sys.executable, "-m", "backendai.cli", "app", session, "vscode"],
        env=env, capture_stderr=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert b"app: invalid value 'vscode'" in bad.stderr
