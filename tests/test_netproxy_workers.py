"""Worker processes: the role feeds them its route table; they listen where it does (the main
port; each app's port in port mode), the kernel spreads connections over all the processes,
and every one of them routes (and forgets) the same apps."""

from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from backendai.config import load_config
from backendai.errors import ConfigError
from backendai.roles.appproxy import serve as serve_appproxy

from .netproxy_helpers import Seen, exchange, h11_backend, serve, status_of


async def _free_range(n: int) -> tuple[int, int]:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    base = min(sock.getsockname()[1], 65535 - n)
    sock.close()
    return base, base + n - 1


@pytest.mark.parametrize("mode", ["wildcard", "port"])
async def test_workers_follow_the_route_table(nursery: trio.Nursery, mode: str) -> None:
    seen = Seen()
    backend = await serve(nursery, partial(h11_backend, "A", seen))
    data_dir = Path(tempfile.mkdtemp(prefix="bai-w-"))
    start, end = await _free_range(10)
    config = load_config(
        None,
        env={},
        overrides={
            "cluster": {"data_dir": str(data_dir), "secret": "s"},
            "appproxy": {
                "port": 0,
                "api_port": 0,
                "workers": 3,
                "mode": mode,
                "domain": "apps.test",
                "port_range_start": start,
                "port_range_end": end,
            },
        },
    )
    try:
        with trio.fail_after(60):
            info = await nursery.start(serve_appproxy, config)
            async with httpx.AsyncClient(
                base_url=info.api_url, headers={"Authorization": "Bearer s"}
            ) as api:
                route = {"session_id": "s1", "app": "web", "target_host": "127.0.0.1",
                         "target_port": backend, "public": True}  # fmt: skip
                placed = (await api.post("/v1/routes", json=route)).json()
                host = f"{placed['name']}.apps.test" if mode == "wildcard" else "127.0.0.1"
                port = info.port if mode == "wildcard" else placed["port"]
                request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                # New connections land on any of the three processes: soon all know the route.
                served = 0
                while served < 40:
                    response = await exchange(port, request.encode())
                    served = served + 1 if status_of(response) == 200 else 0
                    assert served == 0 or response.endswith(b"A GET / ")
                # Each process keeps its own kept-alive connection to the app.
                assert seen.connections >= 2
                await api.delete("/v1/sessions/s1")
                gone = 0
                while gone < 40:  # every process forgets it
                    response = await exchange(port, request.encode())
                    gone = gone + 1 if status_of(response) == 404 else 0
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_workers_are_at_least_one(tmp_path: Path) -> None:
    config = load_config(
        None,
        env={},
        overrides={
            "cluster": {"data_dir": str(tmp_path), "secret": "s"},
            "appproxy": {"workers": 0},
        },
    )
    with pytest.raises(ConfigError, match=r"appproxy.workers=0: expected at least 1"):
        trio.run(serve_appproxy, config)
