"""A storage proxy role in-process on a loopback port, and tokens for it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from backendai.config import Config, load_config
from backendai.roles import storage
from backendai.vfs.tokens import TransferClaims, issue_token

SECRET = "test-storage-secret"


@dataclass
class Proxy:
    info: storage.StorageInfo
    config: Config
    volumes_dir: Path
    manager: httpx.AsyncClient  # the manager-facing API, with the cluster secret
    client: httpx.AsyncClient  # the client-facing API, no credentials

    def token(
        self, op: str, folder: str, path: str, *, ttl: float = 600, volume: str = "local", **kw: Any
    ) -> str:
        claims = TransferClaims(op, volume, folder, path, time.time() + ttl, **kw)  # type: ignore[arg-type]
        return issue_token(self.config.cluster.secret, claims)


@asynccontextmanager
async def open_proxy(tmp_path: Path, **storage_cfg: Any) -> AsyncIterator[Proxy]:
    volumes = tmp_path / "volumes"
    (volumes / "local").mkdir(parents=True, exist_ok=True)
    config = load_config(
        None,
        env={},
        overrides={
            "cluster": {"data_dir": str(tmp_path / "data"), "secret": SECRET},
            "storage": {"port": 0, "client_port": 0, "volumes_dir": str(volumes), **storage_cfg},
        },
    )
    async with trio.open_nursery() as nursery:
        info: storage.StorageInfo = await nursery.start(storage.serve, config)
        headers = {"Authorization": f"Bearer {SECRET}"}
        timeout = httpx.Timeout(60.0)
        async with (
            httpx.AsyncClient(base_url=info.endpoint, headers=headers, timeout=timeout) as mgr,
            httpx.AsyncClient(base_url=info.public_url, timeout=timeout) as cli,
        ):
            yield Proxy(info, config, volumes, mgr, cli)
        nursery.cancel_scope.cancel()
