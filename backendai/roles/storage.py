"""Composition root of the storage proxy role: volumes and the manager-facing API.

For now it serves health and the volume list (name, backend, capacity, usage)
to the manager, authenticated with the cluster secret.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn

import trio
from quart import Response, request
from quart_trio import QuartTrio

from ..config import Config
from ..httpserver import serve_http
from ..vfs import list_volumes

__all__ = ["StorageInfo", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StorageInfo:
    endpoint: str
    volumes: tuple[str, ...]


def create_app(config: Config) -> QuartTrio:
    app = QuartTrio("backendai.storage")
    root = (
        config.data_dir / "volumes"
        if not config.storage.volumes_dir
        else Path(config.storage.volumes_dir)
    )
    expected = f"Bearer {config.cluster.secret.reveal()}".encode()

    @app.before_request
    async def check_secret() -> Response | None:
        if request.path == "/v1/health":
            return None
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            body = {
                "type": "https://api.backend.ai/probs/auth-failed",
                "title": "auth-failed",
                "msg": "missing or wrong cluster secret",
            }
            return Response(json.dumps(body), status=401, content_type="application/problem+json")
        return None

    @app.route("/v1/health")
    async def health() -> Response:
        return Response(json.dumps({"status": "ok"}), content_type="application/json")

    @app.route("/v1/volumes")
    async def volumes() -> Response:
        vols = await trio.to_thread.run_sync(list_volumes, root)
        return Response(
            json.dumps({"volumes": [asdict(v) for v in vols]}), content_type="application/json"
        )

    return app


async def serve(
    config: Config, *, task_status: trio.TaskStatus[StorageInfo] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    cfg = config.storage
    root = config.data_dir / "volumes" if not cfg.volumes_dir else Path(cfg.volumes_dir)
    vols = await trio.to_thread.run_sync(list_volumes, root)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            serve_http, create_app(config), cfg.host, cfg.port, "storage proxy"
        )
        task_status.started(StorageInfo(f"http://{cfg.host}:{port}", tuple(v.name for v in vols)))
    raise AssertionError("the storage proxy returned without being cancelled")
