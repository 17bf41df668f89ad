"""Role ``all``: every role in one process, the embedded default for a laptop or a first try.

The roles share one in-process event bus (unless ``bus.kind = "redis"``) and a
cluster secret generated for this run when none is configured.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from dataclasses import dataclass
from typing import NoReturn

import trio

from ..bus.factory import open_event_bus
from ..config import Config, Secret
from . import agent, appproxy, manager, storage

__all__ = ["AllInfo", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AllInfo:
    manager: manager.ManagerInfo
    agent: agent.AgentInfo
    storage: storage.StorageInfo
    appproxy: appproxy.AppProxyInfo


def with_secret(config: Config) -> Config:
    if config.cluster.secret:
        return config
    cluster = dataclasses.replace(config.cluster, secret=Secret(secrets.token_urlsafe(32)))
    return dataclasses.replace(config, cluster=cluster)


async def serve(
    config: Config, *, task_status: trio.TaskStatus[AllInfo] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    config = with_secret(config)
    async with open_event_bus(config.bus) as bus, trio.open_nursery() as nursery:
        # The storage proxy first: the manager needs its address (a port 0 is known only now).
        s = await nursery.start(storage.serve, config)
        if not config.manager.storage_url:
            mcfg = dataclasses.replace(config.manager, storage_url=s.endpoint)
            config = dataclasses.replace(config, manager=mcfg)
        m = await nursery.start(
            lambda task_status: manager.serve(config, bus=bus, task_status=task_status)
        )
        if not config.appproxy.manager_url:  # the proxy rebuilds its routes from this manager
            proxy_cfg = dataclasses.replace(config.appproxy, manager_url=m.endpoint)
            config = dataclasses.replace(config, appproxy=proxy_cfg)
        p = await nursery.start(appproxy.serve, config)
        a = await nursery.start(
            lambda task_status: agent.serve(config, bus=bus, task_status=task_status)
        )
        task_status.started(AllInfo(m, a, s, p))
    raise AssertionError("role all returned without being cancelled")
