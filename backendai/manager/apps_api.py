"""Apps in sessions: ``POST /session/{id}/start-service``, ``GET /stream/session/{id}/apps``,
and the app proxies' ``POST /appproxy/announce`` (cluster secret, not a keypair).

start-service starts the app in the session's main kernel (the agent picks a
port), registers its route on an app proxy, and answers
``{token, wsproxy_addr, url}``: *url* is the app's address with a short-lived
token that the proxy exchanges for a cookie scoped to that app.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

import sqlalchemy as sa
from quart import Response, g
from quart_trio import QuartTrio

from ..db.tables import app_routes, images
from ..errors import InvalidAPIParameters, RPCError
from ..netproxy import TOKEN_PARAM, Claims, client_ranges, sign
from .api import Caller, json_body, json_response
from .app_proxies import announce, pick_proxy, proxy_call, route_json
from .app_services import ServiceDef, service_defs
from .context import ManagerContext
from .kernel_access import KernelTarget, api_error, main_kernel
from .session_api import owner_scope
from .session_ops import resolve_session

__all__ = ["add_app_routes", "session_apps", "start_request"]


async def _image_labels(ctx: ManagerContext, image: str) -> dict[str, str]:
    def _q(c: sa.Connection) -> dict[str, str]:
        row = c.execute(sa.select(images.c.labels).where(images.c.name == image).limit(1)).first()
        return dict(row[0] or {}) if row is not None else {}

    return await ctx.db.run(_q)


async def session_apps(
    ctx: ManagerContext, ref: str
) -> tuple[dict[str, Any], dict[str, ServiceDef]]:
    caller: Caller = g.caller
    session = await resolve_session(ctx, ref, owner_scope(caller))
    return session, service_defs(await _image_labels(ctx, session["image"]), session["image"])


def _json_object(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The official client sends ``envs`` and ``arguments`` as JSON text."""
    raw = body.get(key)
    if raw is None:
        return {}
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        raise InvalidAPIParameters(f"{key}: invalid value {raw!r}; expected a JSON object")
    return value


def start_request(sdef: ServiceDef, body: dict[str, Any], session_id: str) -> dict[str, Any]:
    try:
        envs = {str(k): str(v) for k, v in _json_object(body, "envs").items()}
        arguments = _json_object(body, "arguments")
    except ValueError as e:
        raise InvalidAPIParameters(f"envs/arguments: not JSON: {e}") from None
    port = body.get("port")
    if port is not None and (not isinstance(port, int) or not 1024 <= port < 65536):
        raise InvalidAPIParameters(f"port: invalid value {port!r}; expected 1024-65535")
    command = sdef.command
    for k, v in arguments.items():
        command += f" {shlex.quote(str(k))}" + ("" if v is None else f"={shlex.quote(str(v))}")
    return {
        "name": sdef.name,
        "command": command,
        "port": port,
        "env": envs,
        # The route's name: a forward (kernels without host networking) admits its own only.
        "route": f"{session_id}/{sdef.name}",
    }


def add_app_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.route("/appproxy/announce", methods=["POST"])
    async def proxy_announce() -> Response:
        body = await json_body()
        pid, url, mode = body.get("id"), body.get("api_url"), body.get("mode")
        if (
            not isinstance(pid, str)
            or not pid
            or not isinstance(url, str)
            or not url.startswith("http")
        ):
            raise InvalidAPIParameters(f"announce: expected {{id, api_url, mode}}, got {body!r}")
        if mode not in ("wildcard", "port"):
            raise InvalidAPIParameters(
                f"announce mode: invalid value {mode!r}; expected 'wildcard' or 'port'"
            )
        return json_response({"routes": await announce(ctx, pid, url, mode)})

    @app.route("/session/<ref>/start-service", methods=["POST"])
    async def start_service(ref: str) -> Response:
        body = await json_body()
        name = body.get("app")
        session, defs = await session_apps(ctx, ref)
        sdef = defs.get(name) if isinstance(name, str) else None
        if sdef is None:
            offered = ", ".join(sorted(defs)) or "none"
            raise InvalidAPIParameters(
                f"app: invalid value {name!r}; image {session['image']!r} offers: {offered}"
            )
        target = await main_kernel(ctx, session)
        try:
            started = await ctx.agents.start_service(
                target.agent_addr, target.kernel_id, start_request(sdef, body, session["id"])
            )
        except RPCError as e:
            raise api_error(e, f"starting app {sdef.name!r} in session {session['name']!r}") from e
        url = await _register(
            ctx,
            session,
            target,
            sdef,
            int(started["port"]),
            list(client_ranges(body.get("allowed_client_ips") or [], "allowed_client_ips")),
            forwarded=bool(started.get("forwarded")),
        )
        token = sign(
            ctx.config.cluster.secret.reveal(),
            Claims("token", f"{session['id']}/{sdef.name}", session["access_key"],
                   time.time() + ctx.config.manager.app_token_ttl),
        )  # fmt: skip
        return json_response(
            {"token": token, "wsproxy_addr": url.rstrip("/"), "url": f"{url}?{TOKEN_PARAM}={token}"}
        )

    @app.route("/stream/session/<ref>/apps", methods=["GET"])
    async def list_apps(ref: str) -> Response:
        session, defs = await session_apps(ctx, ref)
        rows = await ctx.db.run(
            lambda c: {
                r.app: r.url
                for r in c.execute(
                    sa.select(app_routes).where(app_routes.c.session_id == session["id"])
                )
            }
        )
        return json_response(
            [
                {
                    "name": d.name,
                    "protocol": d.protocol,
                    "ports": [d.port],
                    **({"url": rows[d.name]} if d.name in rows else {}),
                }
                for d in defs.values()
            ]
        )


async def _register(
    ctx: ManagerContext,
    session: dict[str, Any],
    target: KernelTarget,
    sdef: ServiceDef,
    port: int,
    ranges: list[str],
    *,
    forwarded: bool,
) -> str:
    """Record the app's route and place it on a proxy; the app's URL."""
    proxy = await pick_proxy(ctx, session["id"], sdef.name)
    host = target.agent_addr.rsplit(":", 1)[0].strip("[]")
    row = {
        "session_id": session["id"],
        "app": sdef.name,
        "proxy_id": proxy.id,
        "protocol": sdef.protocol,
        "target_host": host,
        "target_port": port,
        "owner": session["access_key"],
        "public": sdef.public,
        "allowed_client_ips": ranges,
        "url": "",
        "created_at": time.time(),
        "forwarded": forwarded,
    }

    def _upsert(c: sa.Connection) -> None:
        where = (app_routes.c.session_id == session["id"]) & (app_routes.c.app == sdef.name)
        c.execute(sa.delete(app_routes).where(where))
        c.execute(sa.insert(app_routes).values(**row))

    await ctx.db.run(_upsert)
    placed = await proxy_call(ctx, proxy, "POST", "/v1/routes", json=route_json(row))
    url = str(placed["url"])
    await ctx.db.run(
        lambda c: c.execute(
            sa.update(app_routes)
            .where(app_routes.c.session_id == session["id"], app_routes.c.app == sdef.name)
            .values(url=url)
        )
    )
    return url
