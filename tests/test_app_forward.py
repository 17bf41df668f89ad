"""Apps forwarded through the kernel runner, for kernels whose network the proxy cannot reach.

On a real agent (local backend: a real runner process) the forwarder alone; then a
whole cluster on Docker with ``none`` networking, where an app is reachable only
through a forward, reached through the app proxy (before and after a restart) and through
the manager's tunnel.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from backendai.agent.app_forward import AppForwarder
from backendai.netproxy import forward_key, forward_preamble
from tests.exec_agent import SECRET, ExecAgent, open_exec_agent

from .cluster import cluster_config, open_cluster, wait_status
from .conftest import KERNEL_IMAGE


@pytest.fixture
async def agent() -> AsyncIterator[ExecAgent]:
    async with open_exec_agent("local") as opened:
        yield opened


async def _echo_upper(stream: trio.SocketStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data.upper())


async def _closed_unanswered(stream: trio.SocketStream) -> bool:
    """The peer closed without a byte (an end, or a reset: our bytes were left unread)."""
    try:
        return await stream.receive_some() == b""
    except trio.BrokenResourceError:
        return True


async def test_a_forward_carries_connections_until_its_kernel_is_gone(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    forwarder = AppForwarder(agent.service, "127.0.0.1", SECRET)
    key = forward_key(SECRET)
    preamble = forward_preamble(key, "s1/echo")
    async with trio.open_nursery() as nursery:
        await nursery.start(forwarder.serve)
        [app] = await nursery.start(partial(trio.serve_tcp, _echo_upper, 0, host="127.0.0.1"))
        app_port = app.socket.getsockname()[1]
        port = await forwarder.forward(kid, "echo", app_port, "s1/echo")
        assert port != app_port
        again = await forwarder.forward(kid, "echo", app_port, "s1/echo")
        assert again == port  # started again: kept
        payload = os.urandom(512 * 1024).hex().encode()
        with trio.fail_after(30):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(preamble + payload)
                await stream.send_eof()
                got = b""
                while chunk := await stream.receive_some():
                    got += chunk
        assert got == payload.upper()
        # Without the preamble (not an app proxy), with another cluster's, or with another
        # app's (a stale route): closed, unanswered.
        for opening in (
            b"GET / HTTP/1.1\r\n\r\n",
            forward_preamble(forward_key("another secret"), "s1/echo"),
            forward_preamble(key, "s2/echo"),
        ):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(opening + b"hello")
                with trio.fail_after(10):
                    assert await _closed_unanswered(stream)
        # A forward to a port where nothing listens: the connection is closed at once.
        closed = await forwarder.forward(kid, "nothing", 1, "s1/nothing")
        async with await trio.open_tcp_stream("127.0.0.1", closed) as stream:
            await stream.send_all(forward_preamble(key, "s1/nothing"))
            with trio.fail_after(10):
                assert await stream.receive_some() == b""
        await agent.backend.destroy(kid)
        await forwarder.sweep()
        assert forwarder.port_of(kid, "echo") is None
        with pytest.raises(OSError, match="connect"):
            await trio.open_tcp_stream("127.0.0.1", port)
        nursery.cancel_scope.cancel()


async def test_a_restarted_agent_reopens_its_forwards_on_the_same_ports(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    preamble = forward_preamble(forward_key(SECRET), "s1/echo")
    async with trio.open_nursery() as nursery:
        [app] = await nursery.start(partial(trio.serve_tcp, _echo_upper, 0, host="127.0.0.1"))
        app_port = app.socket.getsockname()[1]
        async with trio.open_nursery() as first_agent:
            before = AppForwarder(agent.service, "127.0.0.1", SECRET)
            await first_agent.start(before.serve)
            port = await before.forward(kid, "echo", app_port, "s1/echo")
            first_agent.cancel_scope.cancel()  # the agent process ends; the kernel lives on
        after = AppForwarder(agent.service, "127.0.0.1", SECRET)
        await nursery.start(after.serve)
        assert await after.restore(kid) == 1
        assert after.port_of(kid, "echo") == port
        with trio.fail_after(30):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(preamble + b"still here")
                await stream.send_eof()
                got = b""
                while chunk := await stream.receive_some():
                    got += chunk
        assert got == b"STILL HERE"
        nursery.cancel_scope.cancel()


@pytest.mark.docker
@pytest.mark.slow
async def test_an_app_in_a_kernel_without_network_is_reached_through_the_proxy(
    tmp_path: Path, kernel_image: str
) -> None:
    config = cluster_config(tmp_path / "data", agent={"backend": "docker", "network_mode": "none"})
    async with open_cluster(config) as cluster:
        created = await cluster.api.create_session(KERNEL_IMAGE, max_wait=120)
        sid = created["sessionId"]
        await wait_status(cluster.api, sid, "RUNNING", deadline=120)

        async def start_web() -> httpx.URL:
            with trio.fail_after(120):
                resp = await cluster.api.request(
                    "POST", f"/session/{sid}/start-service", json={"app": "web"}
                )
            return httpx.URL(resp.json()["url"])

        async def get(url: httpx.URL) -> httpx.Response:
            async with httpx.AsyncClient(timeout=30) as client:
                return await client.get(
                    f"http://127.0.0.1:{url.port}/", headers={"Host": url.netloc.decode()}
                )

        url = await start_web()
        page = await get(url)
        assert page.status_code == 200, page.text
        assert "backendai web app" in page.text
        # A restart ends the kernel's apps: the route goes at once (404, not a dead 502),
        # and starting the app again brings it back.
        await cluster.api.request("PATCH", f"/session/{sid}")
        gone = await get(url)
        assert gone.status_code == 404, gone.text
        again = await get(await start_web())
        assert again.status_code == 200, again.text
        assert "backendai web app" in again.text
        # The manager's tunnel (the official client's ``backend.ai app``) reaches it too.
        path = f"/stream/session/{sid}/tcpproxy?app=web"
        headers = cluster.api.signed_headers("GET", path)
        response = b""
        with trio.fail_after(60):
            async with open_websocket_url(
                cluster.api.websocket_base + path, extra_headers=headers
            ) as ws:
                await ws.send_message(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                while b"backendai web app" not in response:
                    response += await ws.get_message()
        assert response.startswith(b"HTTP/1.0 200 OK")
