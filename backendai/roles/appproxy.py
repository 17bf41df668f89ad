"""Composition root of the app proxy role: the route table and the raw-socket listener."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import NoReturn

import trio

from ..config import Config
from ..netproxy import RouteTable, handle_connection

__all__ = ["AppProxyInfo", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppProxyInfo:
    host: str
    port: int


async def serve(
    config: Config,
    *,
    table: RouteTable | None = None,
    task_status: trio.TaskStatus[AppProxyInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    cfg = config.appproxy
    routes = table if table is not None else RouteTable()
    handler = partial(
        handle_connection,
        table=routes,
        max_header_bytes=cfg.max_header_bytes,
        header_timeout=cfg.header_timeout,
        connect_timeout=cfg.connect_timeout,
    )
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, cfg.port, host=cfg.host))
        port = listeners[0].socket.getsockname()[1]
        log.info("app proxy listening on %s:%d", cfg.host, port)
        task_status.started(AppProxyInfo(cfg.host, port))
    raise AssertionError("the app proxy returned without being cancelled")
