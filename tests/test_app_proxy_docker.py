"""Jupyter in a real Docker session, through the app proxy in both modes.

The stock image's Jupyter (pip-installed when the image is built) is started by
start-service on a port the agent picks: with host networking in port mode, and in
wildcard mode with none (the agent forwards through the kernel runner); a notebook kernel
executes code over the proxied websocket; anonymous requests to Jupyter are
refused; the image's public web app needs no login; after destroy: 404.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import wrap_client_stream

from .cluster import Cluster, cluster_config, open_cluster, wait_status
from .conftest import KERNEL_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.slow]


async def free_range(n: int) -> tuple[int, int]:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    base = min(sock.getsockname()[1], 65535 - n)
    sock.close()
    return base, base + n - 1


@pytest.fixture(params=["wildcard", "port"])
async def cluster(request: pytest.FixtureRequest, kernel_image: str) -> AsyncIterator[Cluster]:
    start, end = await free_range(20)
    data_dir = Path(tempfile.mkdtemp(prefix="bai-jup-"))
    config = cluster_config(
        data_dir,
        agent={
            "backend": "docker",
            "network_mode": "none" if request.param == "wildcard" else "host",
            "cpu": 4.0,
            "mem": "8g",
        },
        appproxy={
            "mode": request.param,
            "domain": "apps.test",
            "port_range_start": start,
            "port_range_end": end,
        },
    )
    try:
        async with open_cluster(config) as c:
            yield c
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


class Browser:
    """Requests to an app URL, sent to the proxy on loopback with the URL's Host."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.netloc
        self.port = parts.port or 80
        self.cookies: dict[str, str] = {}

    def _url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.port}{target}"

    async def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        all_headers = {"Host": self.host, **(headers or {})}
        async with httpx.AsyncClient(cookies=self.cookies) as client:
            return await client.request(
                method, self._url(target), headers=all_headers, timeout=30, **kw
            )

    async def login(self, url: str) -> None:
        parts = urlsplit(url)
        resp = await self.request("GET", f"{parts.path}?{parts.query}")
        assert resp.status_code == 302, resp.text
        self.cookies.update(resp.cookies)


async def start_service(cluster: Cluster, sid: str, app: str) -> dict[str, str]:
    with trio.fail_after(120):
        resp = await cluster.api.request("POST", f"/session/{sid}/start-service", json={"app": app})
    started: dict[str, str] = resp.json()
    return started


def execute_request(code: str, session: str) -> str:
    msg_id = uuid.uuid4().hex
    return json.dumps(
        {
            "header": {
                "msg_id": msg_id, "username": "test", "session": session,
                "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z",
            },
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {
                "code": code, "silent": False, "store_history": True, "user_expressions": {},
                "allow_stdin": False, "stop_on_error": True,
            },
        }
    )  # fmt: skip


async def run_in_notebook_kernel(browser: Browser, code: str) -> str:
    """Start a kernel through Jupyter's REST API and run *code* over its websocket; its stdout."""
    # As a browser: a page load sets Jupyter's _xsrf cookie, which POSTs echo in a header.
    tree = await browser.request("GET", "/tree")
    assert tree.status_code == 200, tree.text
    browser.cookies.update(tree.cookies)
    xsrf = {"X-XSRFToken": browser.cookies["_xsrf"]}
    created = await browser.request("POST", "/api/kernels", json={"name": "python3"}, headers=xsrf)
    assert created.status_code == 201, created.text
    kernel_id = created.json()["id"]
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    session = uuid.uuid4().hex
    out = ""
    stream = await trio.open_tcp_stream("127.0.0.1", browser.port)
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(
            nursery,
            stream,
            browser.host,  # the Host header, as a browser at the app's URL sends it
            f"/api/kernels/{kernel_id}/channels?session_id={session}",
            extra_headers=[(b"Cookie", cookie.encode())],
        )
        await ws.send_message(execute_request(code, session))
        while True:
            msg = json.loads(await ws.get_message())
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out += msg["content"]["text"]
            elif kind == "error":
                raise AssertionError(f"the notebook kernel failed: {msg['content']}")
            elif kind == "execute_reply":
                assert msg["content"]["status"] == "ok"
                await ws.aclose()
                return out
    raise AssertionError("unreachable")


async def test_jupyter_through_the_proxy(cluster: Cluster) -> None:
    created = await cluster.api.create_session(KERNEL_IMAGE, max_wait=120)
    sid = created["sessionId"]
    await wait_status(cluster.api, sid, "RUNNING", deadline=120)
    jupyter = await start_service(cluster, sid, "jupyter")
    browser = Browser(jupyter["url"])
    if cluster.config.appproxy.mode == "port":
        assert browser.host == f"127.0.0.1:{browser.port}"
    else:
        assert browser.host.endswith(f".apps.test:{cluster.info.appproxy.port}")
    # Anonymous: refused before Jupyter sees it.
    anonymous = await browser.request("GET", "/api/status")
    assert anonymous.status_code == 401
    await browser.login(jupyter["url"])
    status = await browser.request("GET", "/api/status")
    assert status.status_code == 200, status.text
    assert "started" in status.json()
    with trio.fail_after(120):
        assert await run_in_notebook_kernel(browser, "print(6 * 7)") == "42\n"
    # The public web app of the same image: anyone may look.
    web = await start_service(cluster, sid, "web")
    page = await Browser(web["url"]).request("GET", "/")
    assert page.status_code == 200
    assert "backendai web app" in page.text
    # After destroy, the routes answer 404.
    await cluster.api.destroy_session(sid)
    with trio.fail_after(60):
        while (gone := await browser.request("GET", "/api/status")).status_code != 404:  # noqa: ASYNC110
            await trio.sleep(0.2)  # polling the proxy: the reaper acts on the session's end
    assert "no app is served" in gone.text
