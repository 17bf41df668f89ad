"""The app proxy's route management API for managers: HTTP + JSON, bearer cluster secret.

``POST /v1/routes`` (one app) -> its placement; ``DELETE /v1/routes/{session}/{app}``;
``DELETE /v1/sessions/{session}`` (every app of a session); ``PUT /v1/routes``
(the whole table, as a manager sees it); ``GET /v1/routes``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..config import Secret
from ..errors import InvalidAPIParameters, UnavailableError
from ..httpserver import guard_with_secret, problem_response
from .gate import client_ranges
from .registry import AppRoute, Placement
from .server import ProxyServer

__all__ = ["app_route_from_json", "app_route_to_json", "create_route_api"]


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj), status=status, content_type="application/json")


_error = problem_response


def _field(d: dict[str, Any], key: str, tp: type, default: Any = None) -> Any:
    value = d.get(key, default)
    if value is None or not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise InvalidAPIParameters(f"route {key}: invalid value {value!r}; expected {tp.__name__}")
    return value


def app_route_from_json(d: Any) -> AppRoute:
    """An app route from its JSON form; bad values are named in the error."""
    if not isinstance(d, dict):
        raise InvalidAPIParameters(f"a route must be a JSON object, not {type(d).__name__}")
    protocol = d.get("protocol", "http")
    if protocol not in ("http", "tcp"):
        raise InvalidAPIParameters(
            f"route protocol: invalid value {protocol!r}; expected 'http' or 'tcp'"
        )
    port = _field(d, "target_port", int)
    if not 0 < port < 65536:
        raise InvalidAPIParameters(f"route target_port: invalid value {port!r}; expected 1-65535")
    ips = client_ranges(d.get("allowed_client_ips", []), "route allowed_client_ips")
    return AppRoute(
        session_id=_field(d, "session_id", str),
        app=_field(d, "app", str),
        target_host=_field(d, "target_host", str),
        target_port=port,
        protocol=protocol,
        owner=_field(d, "owner", str, ""),
        public=_field(d, "public", bool, False),
        allowed_client_ips=ips,
    )


def app_route_to_json(a: AppRoute) -> dict[str, Any]:
    d = asdict(a)
    d["allowed_client_ips"] = list(a.allowed_client_ips)
    return d


def _placement(p: Placement) -> dict[str, Any]:
    return asdict(p)


def create_route_api(server: ProxyServer, secret: Secret, proxy_id: str) -> QuartTrio:
    app = QuartTrio("backendai.appproxy")
    guard_with_secret(app, secret)
    registry = server.registry

    @app.errorhandler(UnavailableError)
    async def unavailable(e: UnavailableError) -> Response:
        return _error(503, "service-unavailable", str(e))

    @app.errorhandler(HTTPException)
    async def http_error(e: HTTPException) -> Response:
        return _error(
            e.code or 500, "http-error", f"{request.method} {request.path}: {e.description}"
        )

    async def body() -> Any:
        try:
            return json.loads(await request.get_data())
        except ValueError as e:
            raise InvalidAPIParameters(f"request body is not valid JSON: {e}") from None

    @app.route("/v1/routes", methods=["POST"])
    async def add_route() -> Response:
        placed = await server.add(app_route_from_json(await body()))
        return _json(_placement(placed), 201)

    @app.route("/v1/routes", methods=["PUT"])
    async def replace_routes() -> Response:
        data = await body()
        if not isinstance(data, dict) or not isinstance(data.get("routes"), list):
            raise InvalidAPIParameters('expected {"routes": [route, ...]}')
        apps = [app_route_from_json(d) for d in data["routes"]]
        placements = await server.replace_all(apps)
        return _json({"routes": [_placement(p) for p in placements]})

    @app.route("/v1/routes", methods=["GET"])
    async def list_routes() -> Response:
        return _json(
            {
                "id": proxy_id,
                "mode": registry.mode,
                "routes": [
                    {**app_route_to_json(a), "placement": _placement(registry.placements[rid])}
                    for rid, a in registry.apps.items()
                ],
            }
        )

    @app.route("/v1/routes/<session_id>/<name>", methods=["DELETE"])
    async def remove_route(session_id: str, name: str) -> Response:
        placed = server.remove(f"{session_id}/{name}")
        return _json({"removed": [] if placed is None else [_placement(placed)]})

    @app.route("/v1/sessions/<session_id>", methods=["DELETE"])
    async def remove_session(session_id: str) -> Response:
        return _json({"removed": [_placement(p) for p in server.remove_session(session_id)]})

    return app
