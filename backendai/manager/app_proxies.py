"""The manager's side of app proxies: who they are, which routes each serves, and telling them.

Proxies announce themselves (``POST /appproxy/announce``, cluster secret) and
get their routes back from ``app_routes``: the database is the truth, so a
restarted proxy rebuilds its table at once.  A new app goes to the live proxy
serving the fewest apps.  Routes of sessions that are no longer RUNNING are
removed by :func:`serve_route_reaper` (woken on session changes, and
periodically as a safety net), and those of a session whose kernels restart
(its apps are gone) at once; a proxy that misses the removal drops the route
on its next announcement.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import sqlalchemy as sa
import trio

from ..db.tables import app_proxies, app_routes, sessions
from ..errors import RPCError, ServiceUnavailable
from .context import ManagerContext

__all__ = [
    "ProxyRow",
    "announce",
    "pick_proxy",
    "proxy_call",
    "remove_session_routes",
    "route_json",
    "serve_route_reaper",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProxyRow:
    id: str
    api_url: str
    mode: str


def route_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An ``app_routes`` row as the proxy's route API takes it."""
    return {
        "session_id": row["session_id"],
        "app": row["app"],
        "protocol": row["protocol"],
        "target_host": row["target_host"],
        "target_port": row["target_port"],
        "owner": row["owner"],
        "public": bool(row["public"]),
        "allowed_client_ips": list(row["allowed_client_ips"] or []),
        "forwarded": bool(row.get("forwarded")),
    }


async def announce(
    ctx: ManagerContext, proxy_id: str, api_url: str, mode: str
) -> list[dict[str, Any]]:
    """Record a proxy's announcement; the routes it should serve."""

    def _tx(c: sa.Connection) -> list[dict[str, Any]]:
        now = time.time()
        values = {"api_url": api_url, "mode": mode, "last_seen": now}
        updated = c.execute(
            sa.update(app_proxies).where(app_proxies.c.id == proxy_id).values(**values)
        )
        if updated.rowcount == 0:
            c.execute(sa.insert(app_proxies).values(id=proxy_id, **values))
            log.info("app proxy %s (%s mode) joined at %s", proxy_id, mode, api_url)
        rows = c.execute(
            sa.select(app_routes)
            .join(sessions, sessions.c.id == app_routes.c.session_id)
            .where(app_routes.c.proxy_id == proxy_id, sessions.c.status == "RUNNING")
        )
        return [route_json(dict(r._mapping)) for r in rows]

    return await ctx.db.run(_tx)


async def pick_proxy(ctx: ManagerContext, session_id: str, app: str) -> ProxyRow:
    """The proxy already serving this app, else the live one serving the fewest apps."""
    horizon = time.time() - ctx.config.manager.app_proxy_timeout

    def _pick(c: sa.Connection) -> ProxyRow | None:
        current = c.execute(
            sa.select(app_proxies.c.id, app_proxies.c.api_url, app_proxies.c.mode)
            .join(app_routes, app_routes.c.proxy_id == app_proxies.c.id)
            .where(
                app_routes.c.session_id == session_id,
                app_routes.c.app == app,
                app_proxies.c.last_seen >= horizon,
            )
        ).first()
        if current is not None:
            return ProxyRow(*current)
        load = (
            sa.select(app_routes.c.proxy_id, sa.func.count().label("n"))
            .group_by(app_routes.c.proxy_id)
            .subquery()
        )
        row = c.execute(
            sa.select(app_proxies.c.id, app_proxies.c.api_url, app_proxies.c.mode)
            .outerjoin(load, load.c.proxy_id == app_proxies.c.id)
            .where(app_proxies.c.last_seen >= horizon)
            .order_by(sa.func.coalesce(load.c.n, 0), app_proxies.c.id)
            .limit(1)
        ).first()
        return None if row is None else ProxyRow(*row)

    found = await ctx.db.run(_pick)
    if found is None:
        raise ServiceUnavailable(
            "no app proxy has announced itself in the last "
            f"{ctx.config.manager.app_proxy_timeout:g} s; start one (backendai run --role=appproxy) "
            "with appproxy.manager_url pointing at this manager"
        )
    return found


async def proxy_call(
    ctx: ManagerContext, proxy: ProxyRow, method: str, path: str, **kw: Any
) -> Any:
    url = proxy.api_url.rstrip("/") + path
    try:
        resp = await ctx.agents.http.request(method, url, **kw)
    except httpx.HTTPError as e:
        raise RPCError(
            f"app proxy {proxy.id} at {proxy.api_url} unreachable for {method} {path}: {e}"
        ) from e
    if resp.status_code >= 400:
        raise RPCError(
            f"app proxy {proxy.id} refused {method} {path}: {resp.status_code} {resp.text[:300]}",
            status=resp.status_code,
        )
    return resp.json()


async def _reap(ctx: ManagerContext) -> int:
    def _stale(c: sa.Connection) -> list[tuple[str, str, str, str]]:
        rows = c.execute(
            sa.select(
                app_routes.c.session_id, app_proxies.c.id, app_proxies.c.api_url, app_proxies.c.mode
            )
            .join(sessions, sessions.c.id == app_routes.c.session_id)
            .join(app_proxies, app_proxies.c.id == app_routes.c.proxy_id)
            .where(sessions.c.status != "RUNNING")
            .distinct()
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    stale = await ctx.db.run(_stale)
    await _remove(ctx, stale)
    if stale:
        log.info("removed the app routes of %d ended sessions", len({s for s, *_ in stale}))
    return len({sid for sid, *_ in stale})


async def remove_session_routes(ctx: ManagerContext, session_id: str) -> None:
    """Take every app route of a session off its proxies and out of the table (its apps
    are gone: the session's kernels restarted)."""

    def _of(c: sa.Connection) -> list[tuple[str, str, str, str]]:
        rows = c.execute(
            sa.select(
                app_routes.c.session_id, app_proxies.c.id, app_proxies.c.api_url, app_proxies.c.mode
            )
            .join(app_proxies, app_proxies.c.id == app_routes.c.proxy_id)
            .where(app_routes.c.session_id == session_id)
            .distinct()
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    await _remove(ctx, await ctx.db.run(_of))


async def _remove(ctx: ManagerContext, rows: list[tuple[str, str, str, str]]) -> None:
    """Remove the routes of (session id, proxy id, api url, mode) *rows*."""
    by_proxy: dict[ProxyRow, set[str]] = defaultdict(set)
    for sid, pid, url, mode in rows:
        by_proxy[ProxyRow(pid, url, mode)].add(sid)
    for proxy, sids in by_proxy.items():
        for sid in sids:
            try:
                await proxy_call(ctx, proxy, "DELETE", f"/v1/sessions/{sid}")
            except RPCError as e:  # it drops the route on its next announcement anyway
                log.info("could not remove the apps of session %s from %s: %s", sid, proxy.id, e)
    gone = {sid for sid, *_ in rows}
    if gone:
        await ctx.db.run(
            lambda c: c.execute(sa.delete(app_routes).where(app_routes.c.session_id.in_(gone)))
        )


async def serve_route_reaper(
    ctx: ManagerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Remove the app routes of sessions that stopped RUNNING."""
    task_status.started()
    while True:
        try:
            await _reap(ctx)
        except Exception:
            log.exception("the app route reaper failed; trying again in a moment")
        await ctx.routes.wait(ctx.config.manager.reconcile_interval)
