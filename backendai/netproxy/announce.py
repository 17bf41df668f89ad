"""An app proxy announcing itself to a manager, which answers with the routes it should serve.

The manager's database is the truth: each answer replaces the table (routes
changed through the route API meanwhile excepted), so a restarted proxy gets
its routes back at once, and a missed add or remove is caught up within one
interval.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import httpx
import trio

from ..config import Secret
from ..errors import APIError, UnavailableError
from .route_api import app_route_from_json
from .server import ProxyServer

__all__ = ["announce_forever"]

log = logging.getLogger(__name__)


async def announce_once(
    server: ProxyServer,
    client: httpx.AsyncClient,
    *,
    manager_url: str,
    secret: Secret,
    proxy_id: str,
    api_url: str,
) -> int:
    """One announcement; the number of routes the manager handed back."""
    since = trio.current_time()
    resp = await client.post(
        f"{manager_url.rstrip('/')}/appproxy/announce",
        json={"id": proxy_id, "api_url": api_url, "mode": server.registry.mode},
        headers={"Authorization": f"Bearer {secret.reveal()}"},
    )
    resp.raise_for_status()
    routes = resp.json()["routes"]
    await server.replace_all([app_route_from_json(d) for d in routes], since=since)
    return len(routes)


async def announce_forever(
    server: ProxyServer,
    *,
    manager_url: str,
    secret: Secret,
    proxy_id: str,
    api_url: str,
    interval: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Announce every *interval* seconds; ``started()`` after the first try, whatever its outcome."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        failing = False
        while True:
            try:
                n = await announce_once(
                    server, client, manager_url=manager_url, secret=secret, proxy_id=proxy_id,
                    api_url=api_url,
                )  # fmt: skip
            except (
                httpx.HTTPError,
                ValueError,
                KeyError,
                TypeError,
                APIError,
                UnavailableError,
            ) as e:
                if not failing:
                    log.warning("app proxy %s: announcing to %s failed (%s); retrying every %g s",
                                proxy_id, manager_url, e, interval)  # fmt: skip
                failing = True
            else:
                if failing:
                    log.info(
                        "app proxy %s: announced to %s again (%d routes)", proxy_id, manager_url, n
                    )
                failing = False
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(interval)
