"""The app proxy's route API (cluster secret) on loopback, through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import httpx
import pytest
import trio

from backendai.config import Secret
from backendai.netproxy import ProxyServer, ProxySettings, RouteAPI, RouteRegistry

AUTH = {"Authorization": "Bearer s3cret"}
ROUTE = {
    "session_id": "s1",
    "app": "jupyter",
    "target_host": "127.0.0.1",
    "target_port": 8888,
    "owner": "AKIA",
}


@pytest.fixture
async def api(nursery: trio.Nursery) -> AsyncIterator[tuple[httpx.AsyncClient, ProxyServer]]:
    registry = RouteRegistry("wildcard", domain="apps.test", public_host="", port=0, ports=range(0))
    server = ProxyServer(registry, ProxySettings(), host="127.0.0.1")
    listeners = await nursery.start(
        partial(
            trio.serve_tcp, RouteAPI(server, Secret("s3cret"), "p1").handle, 0, host="127.0.0.1"
        )
    )
    port = listeners[0].socket.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client, server


async def test_routes_are_added_listed_and_removed(
    api: tuple[httpx.AsyncClient, ProxyServer],
) -> None:
    client, server = api
    added = await client.post("/v1/routes", json=ROUTE, headers=AUTH)
    assert added.status_code == 201
    assert added.json()["route_id"] == "s1/jupyter"
    assert added.json()["name"].startswith("jupyter-")
    second = await client.post(
        "/v1/routes", json={**ROUTE, "app": "web", "public": True}, headers=AUTH
    )
    assert second.status_code == 201
    listed = (await client.get("/v1/routes", headers=AUTH)).json()
    assert listed["id"] == "p1"
    assert sorted(r["app"] for r in listed["routes"]) == ["jupyter", "web"]
    gone = await client.delete("/v1/routes/s1/web", headers=AUTH)
    assert [p["route_id"] for p in gone.json()["removed"]] == ["s1/web"]
    assert (await client.delete("/v1/routes/s1/web", headers=AUTH)).json() == {"removed": []}
    session = await client.delete("/v1/sessions/s1", headers=AUTH)
    assert [p["route_id"] for p in session.json()["removed"]] == ["s1/jupyter"]
    assert server.registry.apps == {}


async def test_the_table_can_be_replaced(api: tuple[httpx.AsyncClient, ProxyServer]) -> None:
    client, server = api
    await client.post("/v1/routes", json=ROUTE, headers=AUTH)
    replaced = await client.put(
        "/v1/routes", json={"routes": [{**ROUTE, "session_id": "s2"}]}, headers=AUTH
    )
    assert replaced.status_code == 200
    assert list(server.registry.apps) == ["s2/jupyter"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "POST",
            "/v1/routes",
            {**ROUTE, "target_port": 0},
            400,
            "route target_port: invalid value 0; expected 1-65535",
        ),
        (
            "POST",
            "/v1/routes",
            {**ROUTE, "target_port": "80"},
            400,
            "route target_port: invalid value '80'; expected int",
        ),
        (
            "POST",
            "/v1/routes",
            {**ROUTE, "protocol": "udp"},
            400,
            "route protocol: invalid value 'udp'",
        ),
        (
            "POST",
            "/v1/routes",
            {**ROUTE, "allowed_client_ips": ["x"]},
            400,
            "route allowed_client_ips: invalid value 'x'",
        ),
        ("POST", "/v1/routes", [1], 400, "a route must be a JSON object, not list"),
        ("PUT", "/v1/routes", {"routes": 1}, 400, 'expected {"routes": [route, ...]}'),
        ("GET", "/v2/nothing", None, 404, "GET /v2/nothing: no such route API resource"),
        ("PATCH", "/v1/routes", {}, 405, "PATCH /v1/routes: not allowed"),
    ],
)
async def test_bad_requests_are_named(
    api: tuple[httpx.AsyncClient, ProxyServer],
    method: str,
    path: str,
    body: object,
    status: int,
    message: str,
) -> None:
    client, server = api
    resp = await client.request(method, path, json=body, headers=AUTH)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/problem+json"
    assert message in resp.json()["msg"]
    assert server.registry.apps == {}


async def test_bad_json_and_a_wrong_secret(api: tuple[httpx.AsyncClient, ProxyServer]) -> None:
    client, _ = api
    bad = await client.post("/v1/routes", content=b"{nope", headers=AUTH)
    assert bad.status_code == 400
    assert "request body is not valid JSON" in bad.json()["msg"]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = await client.post("/v1/routes", json=ROUTE, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["msg"] == "missing or wrong cluster secret"
