"""The app proxy's route management API for managers: HTTP + JSON, bearer cluster secret.

``POST /v1/routes`` (one app) -> its placement; ``DELETE /v1/routes/{session}/{app}``;
``DELETE /v1/sessions/{session}`` (every app of a session); ``PUT /v1/routes``
(the whole table, as a manager sees it); ``GET /v1/routes``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from dataclasses import asdict
from typing import Any

import trio

from ..config import Secret
from ..errors import APIError, InvalidAPIParameters, UnavailableError
from .framing import request_framing
from .gate import client_ranges
from .head import HeadError, RequestHead, parse_head
from .registry import AppRoute, Placement
from .server import ProxyServer
from .wire import Side

__all__ = ["RouteAPI", "app_route_from_json", "app_route_to_json"]


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
        forwarded=_field(d, "forwarded", bool, False),
    )


def app_route_to_json(a: AppRoute) -> dict[str, Any]:
    d = asdict(a)
    d["allowed_client_ips"] = list(a.allowed_client_ips)
    return d


def _placement(p: Placement) -> dict[str, Any]:
    return asdict(p)


class RouteAPI:
    """The route API's server, on the proxy's own HTTP/1.1 reading (no framework): a route
    change is on the table well within a millisecond of the request's arrival."""

    MAX_BODY = 16 * 1024 * 1024

    def __init__(self, server: ProxyServer, secret: Secret, proxy_id: str) -> None:
        self.server = server
        self.proxy_id = proxy_id
        self._expected = f"Bearer {secret.reveal()}".encode()

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One manager connection, kept alive across requests."""
        c = Side(stream)
        async with stream:
            try:
                while True:
                    with trio.move_on_after(_IDLE_SECONDS):
                        raw = await c.read_head(_MAX_HEAD)
                    if raw is None or (raw == b"" and not c.buf):
                        return
                    head = parse_head(raw)
                    framing = request_framing(head)
                    if framing.kind != "length" or framing.length > self.MAX_BODY:
                        raise HeadError(
                            400, f"a route API body needs a Content-Length up to {self.MAX_BODY}"
                        )
                    while len(c.buf) < framing.length:
                        if not await c.fill():
                            return
                    body = bytes(c.buf[: framing.length])
                    del c.buf[: framing.length]
                    status, answer = await self._answer(head, body)
                    await stream.send_all(_response(status, answer, head.keep_alive))
                    if not head.keep_alive:
                        return
            except HeadError as e:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(
                        _response(e.status, _problem(e.status, "bad-request", str(e)), False)
                    )
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _answer(self, head: RequestHead, body: bytes) -> tuple[int, Any]:
        given = (head.header("authorization") or "").encode("latin-1")
        if not hmac.compare_digest(given, self._expected):
            return 401, _problem(401, "auth-failed", "missing or wrong cluster secret")
        try:
            return await self._dispatch(head.method, head.target.split("?", 1)[0], body)
        except APIError as e:
            return e.status, _problem(e.status, e.slug, str(e))
        except UnavailableError as e:
            return 503, _problem(503, "service-unavailable", str(e))

    async def _dispatch(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        server, registry = self.server, self.server.registry
        parts = path.strip("/").split("/")
        if parts == ["v1", "routes"]:
            if method == "POST":
                return 201, _placement(await server.add(app_route_from_json(_json_body(body))))
            if method == "PUT":
                data = _json_body(body)
                if not isinstance(data, dict) or not isinstance(data.get("routes"), list):
                    raise InvalidAPIParameters('expected {"routes": [route, ...]}')
                placements = await server.replace_all(
                    [app_route_from_json(d) for d in data["routes"]]
                )
                return 200, {"routes": [_placement(p) for p in placements]}
            if method == "GET":
                routes = [
                    {**app_route_to_json(a), "placement": _placement(registry.placements[rid])}
                    for rid, a in registry.apps.items()
                ]
                return 200, {"id": self.proxy_id, "mode": registry.mode, "routes": routes}
        elif len(parts) == 4 and parts[:2] == ["v1", "routes"] and method == "DELETE":
            placed = server.remove(f"{parts[2]}/{parts[3]}")
            return 200, {"removed": [] if placed is None else [_placement(placed)]}
        elif len(parts) == 3 and parts[:2] == ["v1", "sessions"] and method == "DELETE":
            return 200, {"removed": [_placement(p) for p in server.remove_session(parts[2])]}
        else:
            return 404, _problem(404, "not-found", f"{method} {path}: no such route API resource")
        return 405, _problem(405, "method-not-allowed", f"{method} {path}: not allowed")


_IDLE_SECONDS = 75.0
_MAX_HEAD = 16384
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 503: "Service Unavailable"}  # fmt: skip


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as e:
        raise InvalidAPIParameters(f"request body is not valid JSON: {e}") from None


def _problem(status: int, slug: str, msg: str) -> dict[str, Any]:
    return {"type": f"https://api.backend.ai/probs/{slug}", "title": slug, "msg": msg}


def _response(status: int, obj: Any, keep_alive: bool) -> bytes:
    body = json.dumps(obj).encode()
    kind = "application/problem+json" if status >= 400 else "application/json"
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode() + body
