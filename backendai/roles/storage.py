"""Composition root of the storage proxy role: volumes, the manager API, the transfer API.

Two ports: ``storage.port`` serves the manager-facing API (cluster secret) on
Hypercorn; ``storage.client_port`` serves ``/upload`` and ``/download`` (by
token) on the transfer server built for bulk bytes (``vfs.fastserver``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NoReturn

import trio

from ..config import Config
from ..httpserver import serve_http
from ..vfs import open_volumes
from ..vfs.fastserver import serve_transfers
from ..vfs.janitor import serve_upload_janitor
from ..vfs.manager_api import create_manager_app
from ..vfs.transfer_api import TransferApp

__all__ = ["StorageInfo", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StorageInfo:
    endpoint: str
    public_url: str
    volumes: tuple[str, ...]


async def serve(
    config: Config, *, task_status: trio.TaskStatus[StorageInfo] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    cfg = config.storage
    root = config.data_dir / "volumes" if not cfg.volumes_dir else Path(cfg.volumes_dir)
    owner: tuple[int, int] | None = (cfg.kernel_uid, cfg.kernel_gid)
    if -1 in (cfg.kernel_uid, cfg.kernel_gid) or os.geteuid() != 0:
        owner = None  # only root can give files away
    volumes = await trio.to_thread.run_sync(open_volumes, root, cfg.volume_backends, owner)
    limiter = trio.CapacityLimiter(cfg.io_threads)
    secret = config.cluster.secret
    manager_app = create_manager_app(volumes, secret, limiter)
    transfers = TransferApp(volumes, secret, limiter=limiter, sync_uploads=cfg.sync_uploads)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http, manager_app, cfg.host, cfg.port, "storage proxy")
        client_port = await nursery.start(
            partial(serve_transfers, idle_timeout=cfg.idle_timeout),
            transfers,
            cfg.host,
            cfg.client_port,
        )
        await nursery.start(serve_upload_janitor, volumes, cfg.upload_expiry, limiter)
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        endpoint = f"http://{host}:{port}"
        public_url = cfg.public_url or f"http://{host}:{client_port}"
        if not cfg.public_url and cfg.host in ("0.0.0.0", "::"):
            log.warning(
                "storage.public_url is empty and storage.host is %s: clients will be sent to %s, "
                "which they cannot reach; set storage.public_url",
                cfg.host,
                public_url,
            )
        manager_app.config["BACKENDAI_PUBLIC_URL"] = public_url
        task_status.started(StorageInfo(endpoint, public_url, tuple(volumes.names())))
    raise AssertionError("the storage proxy returned without being cancelled")
