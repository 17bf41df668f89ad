"""The manager's REST application: app factory, authentication hook, problem+json errors.

Routes live in ``session_api`` and ``events_api``; this module wires them to a
:class:`~backendai.manager.context.ManagerContext` passed in (no globals).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from quart import Response, g, has_websocket_context, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .. import __version__
from ..config import Secret
from ..db.tables import keypairs
from ..errors import APIError, AuthenticationFailed, InvalidAPIParameters, PermissionDenied
from .auth import check_request_signature
from .context import ManagerContext

__all__ = ["API_VERSION", "Caller", "create_app", "problem"]

log = logging.getLogger(__name__)
API_VERSION = "v7.20230615"
_PROBLEM_BASE = "https://api.backend.ai/probs/"
_KEY_CACHE_TTL = 10.0


@dataclass(frozen=True)
class Caller:
    """Who is calling, and on whose behalf (``owner_access_key`` delegation)."""

    access_key: str
    role: str
    owner_access_key: str
    # Whether the request named an owner (owner_access_key=...), rather than defaulting to the caller.
    named_owner: bool = False

    @property
    def is_superadmin(self) -> bool:
        return self.role == "superadmin"


def problem(status: int, slug: str, title: str, msg: str) -> Response:
    body = {"type": _PROBLEM_BASE + slug, "title": title, "msg": msg}
    return Response(json.dumps(body), status=status, content_type="application/problem+json")


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj), status=status, content_type="application/json")


async def json_body() -> Any:
    raw = await request.get_data()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidAPIParameters(f"request body is not valid JSON: {e}") from None


@dataclass(frozen=True)
class KeypairRecord:
    access_key: str
    secret_key: Secret
    role: str
    is_active: bool


class _KeyCache:
    """access key -> keypair, cached briefly to spare the database a query per request."""

    def __init__(self, ctx: ManagerContext) -> None:
        self._ctx = ctx
        self._entries: dict[str, tuple[float, KeypairRecord | None]] = {}

    async def get(self, access_key: str) -> KeypairRecord | None:
        hit = self._entries.get(access_key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]

        def _load(c: sa.Connection) -> KeypairRecord | None:
            row = c.execute(
                sa.select(keypairs.c.secret_key, keypairs.c.role, keypairs.c.is_active).where(
                    keypairs.c.access_key == access_key
                )
            ).first()
            return (
                None
                if row is None
                else KeypairRecord(access_key, Secret(row[0]), row[1], bool(row[2]))
            )

        value = await self._ctx.db.run(_load)
        if len(self._entries) > 10000:
            self._entries.clear()
        self._entries[access_key] = (now + _KEY_CACHE_TTL, value)
        return value


def _raw_target(scope: Mapping[str, Any]) -> str:
    """The request target exactly as received (the signature covers it)."""
    raw = scope.get("raw_path") or scope["path"].encode()
    target = raw.decode("latin-1")
    qs = scope.get("query_string") or b""
    return f"{target}?{qs.decode('latin-1')}" if qs else target


def _where() -> str:
    """``METHOD /path`` of the request or websocket being handled."""
    if has_websocket_context():
        return f"WEBSOCKET {websocket.path}"
    return f"{request.method} {request.path}"


def create_app(ctx: ManagerContext) -> QuartTrio:
    from .agents_api import add_agent_routes
    from .app_tunnels import add_tunnel_routes
    from .apps_api import add_app_routes
    from .events_api import add_event_routes
    from .exec_api import add_exec_routes
    from .files_api import add_file_routes
    from .groups_api import add_group_routes
    from .images_api import add_image_routes
    from .session_api import add_session_routes
    from .stream_api import add_stream_routes

    app = QuartTrio("backendai.manager")
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    keys = _KeyCache(ctx)

    async def authenticate_as(
        method: str, scope: Mapping[str, Any], headers: Mapping[str, str], args: Mapping[str, str]
    ) -> None:
        keypair = await check_request_signature(
            method, _raw_target(scope), headers, keys.get, now=time.time()
        )
        access_key, role = keypair.access_key, keypair.role
        owner = args.get("owner_access_key") or access_key
        if owner != access_key and role not in ("superadmin", "admin"):
            raise PermissionDenied(
                f"owner_access_key={owner!r}: only administrators may act for another keypair"
            )
        g.caller = Caller(access_key, role, owner, named_owner="owner_access_key" in args)

    proxy_secret = f"Bearer {ctx.config.cluster.secret.reveal()}".encode()

    @app.before_request
    async def authenticate() -> None:
        if request.path == "/" or request.method == "OPTIONS":
            return
        if request.path.startswith("/appproxy/"):  # app proxies hold the cluster secret
            given = request.headers.get("Authorization", "").encode()
            if not ctx.config.cluster.secret or not hmac.compare_digest(given, proxy_secret):
                raise AuthenticationFailed("app proxy calls need the cluster secret")
            return
        await authenticate_as(request.method, request.scope, dict(request.headers), request.args)

    @app.before_websocket
    async def authenticate_websocket() -> None:
        # A websocket handshake is a GET, and the official client signs it as one.
        await authenticate_as("GET", websocket.scope, dict(websocket.headers), websocket.args)

    @app.after_request
    async def version_header(resp: Response) -> Response:
        resp.headers["X-BackendAI-Version"] = API_VERSION
        return resp

    @app.errorhandler(APIError)
    async def api_error(e: APIError) -> Response:
        if isinstance(e, AuthenticationFailed):
            log.info("refused %s: %s", _where(), e)
        return problem(e.status, e.slug, e.title, str(e))

    @app.errorhandler(HTTPException)
    async def http_error(e: HTTPException) -> Response:
        code = e.code or 500
        slug = {404: "not-found", 405: "method-not-allowed", 413: "request-too-large"}.get(
            code, "http-error"
        )
        return problem(code, slug, e.name, f"{_where()}: {e.description}")

    @app.errorhandler(Exception)
    async def unexpected(e: Exception) -> Response:
        log.exception("unhandled error in %s", _where())
        return problem(
            500,
            "internal-server-error",
            "Internal server error",
            f"{type(e).__name__}; see the manager log",
        )

    @app.route("/", methods=["GET"])
    async def hello() -> Response:
        return json_response({"version": API_VERSION, "manager": __version__})

    add_session_routes(app, ctx)
    add_event_routes(app, ctx)
    add_agent_routes(app, ctx)
    add_exec_routes(app, ctx)
    add_stream_routes(app, ctx)
    add_file_routes(app, ctx)
    add_image_routes(app, ctx)
    add_group_routes(app, ctx)
    add_app_routes(app, ctx)
    add_tunnel_routes(app, ctx)
    return app
