"""Composition root of the app proxy role: route registry, listeners, route API."""

from __future__ import annotations

import dataclasses
import gc
import logging
import socket
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NoReturn

import trio

from ..config import AppProxyConfig, Config
from ..errors import ConfigError
from ..netproxy import (
    AuthGate,
    ProxyServer,
    ProxySettings,
    RouteAPI,
    RouteFeed,
    RouteRegistry,
    SpentTokens,
    announce_forever,
    bound_port,
    forward_key,
    open_listeners,
    tls_context,
    worker_environment,
)

__all__ = ["AppProxyInfo", "build_registry", "serve", "settings_from"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppProxyInfo:
    host: str
    port: int
    api_port: int
    api_url: str
    id: str


def settings_from(cfg: AppProxyConfig, secret: str = "") -> ProxySettings:
    return ProxySettings(
        max_header_bytes=cfg.max_header_bytes,
        header_timeout=cfg.header_timeout,
        keepalive_timeout=cfg.keepalive_timeout,
        connect_timeout=cfg.connect_timeout,
        max_connections_per_route=cfg.max_connections_per_route,
        scheme="https" if cfg.tls_cert else "http",
        forward_key=forward_key(secret) if secret else "",
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


async def start_workers(
    nursery: trio.Nursery, config: Config, server: ProxyServer, port: int
) -> None:
    """Feed the route table to ``workers - 1`` more processes on the main port (and, in port
    mode, on each app's port); return once each follows it."""
    cfg = config.appproxy
    feed = RouteFeed(server.registry)
    server.on_change = feed.changed
    path = config.data_dir / f"appproxy-{proxy_id(cfg)}" / "feed.sock"
    await nursery.start(feed.serve, path)
    settings = dataclasses.asdict(settings_from(cfg, config.cluster.secret.reveal()))
    spec = {
        "host": cfg.host, "port": port, "mode": cfg.mode, "domain": cfg.domain, "feed": str(path),
        "secret": config.cluster.secret.reveal(), "settings": settings,
        "cookie_ttl": cfg.cookie_ttl, "tls_cert": cfg.tls_cert, "tls_key": cfg.tls_key,
        "spent_dir": str(spent_dir(config)),
    }  # fmt: skip
    for _ in range(cfg.workers - 1):
        nursery.start_soon(
            partial(
                trio.run_process,
                [sys.executable, "-m", "backendai.netproxy.worker"],
                env=worker_environment(spec),
            )
        )
    with trio.fail_after(60):
        while feed.subscribers < cfg.workers - 1:  # noqa: ASYNC110 (other processes connect)
            await trio.sleep(0.05)
    log.info("app proxy: %d worker processes follow the route table", cfg.workers - 1)


def spent_dir(config: Config) -> Path:
    """Where this proxy's processes record the tokens exchanged (one use each)."""
    return config.data_dir / f"appproxy-{proxy_id(config.appproxy)}" / "spent-tokens"


async def serve(
    config: Config,
    *,
    task_status: trio.TaskStatus[AppProxyInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    cfg = config.appproxy
    registry = build_registry(config)
    if not config.cluster.secret:
        raise ConfigError("cluster.secret is empty; the app proxy's route API and tokens need it")
    gate = AuthGate(
        config.cluster.secret.reveal(),
        cookie_ttl=cfg.cookie_ttl,
        secure=bool(cfg.tls_cert),
        spent=SpentTokens(spent_dir(config)),
    )
    if cfg.workers < 1:
        raise ConfigError(
            f"appproxy.workers={cfg.workers}: expected at least 1 (processes serving apps)"
        )
    server = ProxyServer(
        registry,
        settings_from(cfg, config.cluster.secret.reveal()),
        host=cfg.host,
        tls=tls_context(cfg.tls_cert, cfg.tls_key),
        gate=gate,
        reuse_port=cfg.workers > 1,
    )
    pid = proxy_id(cfg)
    api = RouteAPI(server, config.cluster.secret, pid)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        log.info("app proxy %s (%s mode) listening on %s:%d", pid, cfg.mode, cfg.host, port)
        if cfg.workers > 1:
            await start_workers(nursery, config, server, port)
        api_listeners = await open_listeners(cfg.api_host, cfg.api_port, None)
        await nursery.start(trio.serve_listeners, api.handle, api_listeners)
        api_port = bound_port(api_listeners[0])
        log.info("app proxy %s: route API on %s:%d", pid, cfg.api_host, api_port)
        api_url = cfg.api_url or f"http://{cfg.api_host}:{api_port}"
        if cfg.manager_url:
            await nursery.start(
                partial(
                    announce_forever,
                    server,
                    manager_url=cfg.manager_url,
                    secret=config.cluster.secret,
                    proxy_id=pid,
                    api_url=api_url,
                    interval=cfg.announce_interval,
                )
            )
        # What startup made lives as long as the process: out of the collector's way, so
        # that a full collection (frequent under many short connections) stays short.
        gc.freeze()
        task_status.started(AppProxyInfo(cfg.host, port, api_port, api_url, pid))
    raise AssertionError("the app proxy returned without being cancelled")
