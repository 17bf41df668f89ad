"""A cluster whose agent runs kernels as local processes, with the app proxy in wildcard mode."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from backendai.agent.local import IMAGE as LOCAL_IMAGE
from backendai.client.api import APIClient

from .cluster import Cluster, cluster_config, open_cluster, wait_status

__all__ = ["DOMAIN", "LOCAL_IMAGE", "cluster", "get", "start_app"]

DOMAIN = "apps.test"


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    # A short data directory: the kernels' runner sockets live under it (AF_UNIX paths are short).
    data_dir = Path(tempfile.mkdtemp(prefix="bai-apps-"))
    config = cluster_config(
        data_dir,
        agent={"backend": "local", "cpu": 16.0, "mem": "16g"},
        appproxy={"mode": "wildcard", "domain": DOMAIN},
    )
    try:
        async with open_cluster(config) as c:
            yield c
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def start_app(
    cluster: Cluster, app: str, api: APIClient | None = None, **extra: object
) -> tuple[str, dict[str, str]]:
    api = api or cluster.api
    created = await api.create_session(LOCAL_IMAGE, max_wait=30)
    sid = created["sessionId"]
    await wait_status(api, sid, "RUNNING", deadline=60)
    with trio.fail_after(60):
        resp = await api.request(
            "POST", f"/session/{sid}/start-service", json={"app": app, **extra}
        )
    return sid, resp.json()


async def get(port: int, url: str, cookies: dict[str, str] | None = None) -> httpx.Response:
    """GET *url* (a wildcard-mode URL) from the proxy on 127.0.0.1:*port*, Host as in the URL."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    async with httpx.AsyncClient(cookies=cookies) as client:
        return await client.get(
            f"http://127.0.0.1:{port}{target}", headers={"Host": parts.netloc}, timeout=20
        )
