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
from ..errors import (
    APIError,
    AuthenticationFailed,
    InvalidAPIParameters,
    PermissionDenied,
    TooManyRequests,
)
from .accounts import keypair_owner
from .auth import check_request_signature
from .context import ManagerContext
from .openapi import openapi_document
from .ratelimit import decide

__all__ = ["API_VERSION", "Caller", "create_app", "problem"]

log = logging.getLogger(__name__)
API_VERSION = "v7.20230615"
_PROBLEM_BASE = "https://api.backend.ai/probs/"
_KEY_CACHE_TTL = 10.0
_TOUCH_INTERVAL = 60.0
# Routes anyone may call unsigned: the version probe, the password login, the API document.
PUBLIC_PATHS = frozenset({"/", "/auth/authorize", "/openapi.json"})


@dataclass(frozen=True)
class Caller:
    """Who is calling, and on whose behalf (``owner_access_key`` delegation)."""

    access_key: str
    role: str
    owner_access_key: str
    # Whether the request named an owner (owner_access_key=...), rather than defaulting to the caller.
    named_owner: bool = False
    # The caller's domain, and its user (None: a keypair made before accounts existed).
    domain: str = "default"
    user_uuid: str | None = None

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
    # The keypair and its user are both active.
    is_active: bool
    domain: str = "default"
    user_uuid: str | None = None
    # Requests per window; 0: the manager's default_rate_limit.
    rate_limit: int = 0


class _KeyCache:
    """access key -> keypair, cached briefly to spare the database a query per request."""

    def __init__(self, ctx: ManagerContext) -> None:
        self._ctx = ctx
        self._entries: dict[str, tuple[float, KeypairRecord | None]] = {}
        self._touched: dict[str, float] = {}

    async def touch(self, access_key: str, now: float) -> None:
        """Record the keypair's use (``last_used``), at most once a minute per keypair."""
        if self._touched.get(access_key, 0.0) > now - _TOUCH_INTERVAL:
            return
        if len(self._touched) > 10000:
            self._touched.clear()
        self._touched[access_key] = now
        await self._ctx.db.run(
            lambda c: c.execute(
                keypairs.update().where(keypairs.c.access_key == access_key).values(last_used=now)
            )
        )

    async def get(self, access_key: str) -> KeypairRecord | None:
        hit = self._entries.get(access_key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]

        def _load(c: sa.Connection) -> KeypairRecord | None:
            row = c.execute(
                sa.select(keypairs.c.secret_key, keypairs.c.is_active, keypairs.c.rate_limit).where(
                    keypairs.c.access_key == access_key
                )
            ).first()
            owner = keypair_owner(c, access_key)
            if row is None or owner is None:
                return None
            return KeypairRecord(
                access_key,
                Secret(row.secret_key),
                owner.role,
                bool(row.is_active) and owner.user_active,
                owner.domain,
                owner.user_uuid,
                row.rate_limit or 0,
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
    from .auth_api import add_auth_routes
    from .events_api import add_event_routes
    from .exec_api import add_exec_routes
    from .files_api import add_file_routes
    from .folders_api import add_folder_routes
    from .gql_api import add_gql_routes
    from .groups_api import add_group_routes
    from .images_api import add_image_routes
    from .session_api import add_session_routes
    from .stream_api import add_stream_routes

    # No static folder: every route is an API route, and each is in the OpenAPI document.
    app = QuartTrio("backendai.manager", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    keys = _KeyCache(ctx)

    async def authenticate_as(
        method: str, scope: Mapping[str, Any], headers: Mapping[str, str], args: Mapping[str, str]
    ) -> None:
        now = time.time()
        keypair = await check_request_signature(
            method, _raw_target(scope), headers, keys.get, now=now
        )
        access_key, role = keypair.access_key, keypair.role
        await keys.touch(access_key, now)
        window = ctx.config.manager.rate_limit_window
        count = await ctx.rates.hit(access_key, now, window)
        rate = decide(count, keypair.rate_limit or ctx.config.manager.default_rate_limit, window)
        g.rate = rate
        if not rate.allowed:
            raise TooManyRequests(
                f"access key {access_key!r} made {count - 1} requests in the last {window:g} s; "
                f"its limit is {rate.limit} per window"
            )
        # ``ownerAccessKey`` is the same delegation in the events API's spelling.
        named = args.get("owner_access_key") or args.get("ownerAccessKey")
        owner = named or access_key
        if owner != access_key:
            await _check_delegation(keypair, owner)
        g.caller = Caller(
            access_key,
            role,
            owner,
            named_owner=named is not None,
            domain=keypair.domain,
            user_uuid=keypair.user_uuid,
        )

    async def _check_delegation(keypair: KeypairRecord, owner: str) -> None:
        """Superadmins act for anyone; a domain admin for keypairs of their domain."""
        if keypair.role == "superadmin":
            return
        if keypair.role != "admin":
            raise PermissionDenied(
                f"owner_access_key={owner!r}: only administrators may act for another keypair"
            )
        target = await keys.get(owner)
        if target is None or target.domain != keypair.domain or target.role == "superadmin":
            raise PermissionDenied(
                f"owner_access_key={owner!r}: no keypair of that name in domain "
                f"{keypair.domain!r}, the only domain admin {keypair.access_key} manages"
            )

    proxy_secret = f"Bearer {ctx.config.cluster.secret.reveal()}".encode()

    @app.before_request
    async def authenticate() -> None:
        if request.path in PUBLIC_PATHS or request.method == "OPTIONS":
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
        rate = g.get("rate")
        if rate is not None:
            resp.headers.update(rate.headers())
        if resp.status_code >= 400 and (
            request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "")
        ):
            # Refused before its body was read: a kept-alive connection would then wait on
            # the unread body, so close it (the client opens a new one).
            resp.headers["Connection"] = "close"
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

    @app.route("/openapi.json", methods=["GET"])
    async def openapi() -> Response:
        return json_response(openapi_document(request.host_url.rstrip("/")))

    add_session_routes(app, ctx)
    add_event_routes(app, ctx)
    add_agent_routes(app, ctx)
    add_exec_routes(app, ctx)
    add_stream_routes(app, ctx)
    add_file_routes(app, ctx)
    add_image_routes(app, ctx)
    add_group_routes(app, ctx)
    add_auth_routes(app, ctx)
    add_gql_routes(app, ctx)
    add_folder_routes(app, ctx)
    add_app_routes(app, ctx)
    add_tunnel_routes(app, ctx)
    return app
