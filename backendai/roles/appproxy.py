"""Composition root of the app proxy role: route registry, listeners, route API."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import NoReturn

import trio

from ..config import AppProxyConfig, Config
from ..errors import ConfigError
from ..netproxy import ProxySettings
from ..netproxy.listen import tls_context
from ..netproxy.registry import RouteRegistry
from ..netproxy.server import ProxyServer

__all__ = ["AppProxyInfo", "build_registry", "serve", "settings_from"]

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


def proxy_id(cfg: AppProxyConfig) -> str:
    return cfg.id or socket.gethostname()


def build_registry(config: Config) -> RouteRegistry:
    cfg = config.appproxy
    if not 0 < cfg.port_range_start <= cfg.port_range_end < 65536:
        raise ConfigError(
            f"appproxy.port_range_start={cfg.port_range_start} port_range_end={cfg.port_range_end}: "
            "expected 0 < start <= end < 65536"
        )
    if cfg.mode == "wildcard" and not cfg.domain.strip("."):
        raise ConfigError(
            "appproxy.domain is empty; wildcard mode needs a domain (apps.example.com)"
        )
    return RouteRegistry(
        cfg.mode,
        domain=cfg.domain,
        public_host=cfg.public_host or cfg.host,
        port=cfg.port,
        ports=range(cfg.port_range_start, cfg.port_range_end + 1),
        scheme="https" if cfg.tls_cert else "http",
        state_file=config.data_dir / f"appproxy-{proxy_id(cfg)}" / "ports.json",
    )


async def serve(
    config: Config,
    *,
    task_status: trio.TaskStatus[AppProxyInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    cfg = config.appproxy
    registry = build_registry(config)
    server = ProxyServer(
        registry,
        settings_from(cfg),
        host=cfg.host,
        tls=tls_context(cfg.tls_cert, cfg.tls_key),
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        log.info("app proxy (%s mode) listening on %s:%d", cfg.mode, cfg.host, port)
        task_status.started(AppProxyInfo(cfg.host, port))
    raise AssertionError("the app proxy returned without being cancelled")
