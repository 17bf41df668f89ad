"""Composition root of the manager role: database, bus, agent client, loops, REST API."""

from __future__ import annotations

import logging
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import trio

from ..bus import EventBus
from ..bus.factory import use_event_bus
from ..bus.redis import RedisEventBus
from ..config import Config
from ..db import open_database
from ..httpserver import serve_http
from ..manager.agent_client import open_agent_client
from ..manager.agent_monitor import serve_agent_monitor
from ..manager.api import create_app
from ..manager.app_proxies import serve_route_reaper
from ..manager.bootstrap import Credentials, ensure_bootstrap, write_credentials
from ..manager.context import ManagerContext
from ..manager.launcher import serve_launcher
from ..manager.policy_reaper import serve_policy_reaper
from ..manager.ratelimit import MemoryRateWindow
from ..manager.scheduling import serve_scheduler
from ..manager.storage_client import open_storage_client
from ..manager.terminator import serve_terminator

__all__ = ["ManagerInfo", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagerInfo:
    endpoint: str
    port: int
    credentials: Credentials
    credentials_file: Path
    manager_id: str


def db_url(config: Config) -> str:
    return config.manager.db_url or f"sqlite:///{config.data_dir / 'manager.db'}"


def storage_url(config: Config) -> str:
    if config.manager.storage_url:
        return config.manager.storage_url
    host = config.storage.host
    return (
        f"http://[{host}]:{config.storage.port}"
        if ":" in host
        else f"http://{host}:{config.storage.port}"
    )


async def serve(
    config: Config,
    *,
    bus: EventBus | None = None,
    task_status: trio.TaskStatus[ManagerInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    cfg = config.manager
    manager_id = f"manager-{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(open_database(db_url(config), threads=cfg.db_threads))
        the_bus = await stack.enter_async_context(use_event_bus(config.bus, bus))
        agents = await stack.enter_async_context(open_agent_client(config.cluster.secret))
        storage = await stack.enter_async_context(
            open_storage_client(storage_url(config), config.cluster.secret)
        )
        creds = await db.run(ensure_bootstrap)
        ctx = ManagerContext(
            config=config,
            db=db,
            bus=the_bus,
            agents=agents,
            manager_id=manager_id,
            rates=the_bus if isinstance(the_bus, RedisEventBus) else MemoryRateWindow(),
            storage=storage,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_agent_monitor, ctx)
            await nursery.start(serve_scheduler, ctx)
            await nursery.start(serve_launcher, ctx)
            await nursery.start(serve_terminator, ctx)
            await nursery.start(serve_policy_reaper, ctx)
            await nursery.start(serve_route_reaper, ctx)
            port = await nursery.start(serve_http, create_app(ctx), cfg.host, cfg.port, "manager")
            host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
            endpoint = f"http://{host}:{port}"
            cred_file = (
                Path(cfg.credentials_file)
                if cfg.credentials_file
                else config.data_dir / "credentials.json"
            )
            write_credentials(cred_file, endpoint, creds)
            log.info("manager %s serving the API at %s", manager_id, endpoint)
            task_status.started(ManagerInfo(endpoint, port, creds, cred_file, manager_id))
    raise AssertionError("the manager's services returned without being cancelled")
