"""Composition root of the app proxy role: the route table and the raw-socket listener."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import NoReturn

import trio

from ..config import AppProxyConfig, Config
from ..netproxy import ConnectionLimiter, ProxySettings, RouteTable, handle_connection
from ..netproxy.listen import bound_port, open_listeners, tls_context

__all__ = ["AppProxyInfo", "serve", "settings_from"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppProxyInfo:
    host: str
    port: int


def settings_from(cfg: AppProxyConfig) -> ProxySettings:
    return ProxySettings(
        max_header_bytes=cfg.max_header_bytes,
        header_timeout=cfg.header_timeout,
        keepalive_timeout=cfg.keepalive_timeout,
        connect_timeout=cfg.connect_timeout,
        max_connections_per_route=cfg.max_connections_per_route,
        scheme="https" if cfg.tls_cert else "http",
    )


async def serve(
    config: Config,
    *,
    table: RouteTable | None = None,
    task_status: trio.TaskStatus[AppProxyInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    cfg = config.appproxy
    routes = table if table is not None else RouteTable()
    settings = settings_from(cfg)
    handler = partial(
        handle_connection,
        router=routes,
        settings=settings,
        limiter=ConnectionLimiter(settings.max_connections_per_route),
    )
    listeners = await open_listeners(cfg.host, cfg.port, tls_context(cfg.tls_cert, cfg.tls_key))
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        port = bound_port(listeners[0])
        log.info("app proxy listening on %s:%d", cfg.host, port)
        task_status.started(AppProxyInfo(cfg.host, port))
    raise AssertionError("the app proxy returned without being cancelled")
