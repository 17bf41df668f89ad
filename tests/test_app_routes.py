"""Apps through the app proxy, end to end on one cluster (local backend: the kernel runs as a
subprocess and serves the standard library's HTTP file server as its app).

start-service starts the app and registers its route; the token opens it once and becomes a
cookie for that app only; anonymous requests to an authenticated app are refused; a public app
needs nothing; a restarted proxy rebuilds its table from the manager; after destroy: 404.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from backendai.client.api import APIClient, APIResponseError
from backendai.netproxy import (
    AuthGate,
    ProxyServer,
    ProxySettings,
    RouteAPI,
    RouteRegistry,
    announce_once,
)

from .apps_helpers import DOMAIN, LOCAL_IMAGE, cluster, get, start_app
from .cluster import Cluster, query, wait_status

__all__ = ["cluster"]  # the fixture, imported


async def test_an_authenticated_app_opens_with_its_token_only(cluster: Cluster) -> None:
    port = cluster.info.appproxy.port
    sid, started = await start_app(cluster, "web")
    assert set(started) >= {"token", "wsproxy_addr", "url"}
    host = urlsplit(started["url"]).hostname or ""
    assert host.endswith(f".{DOMAIN}")
    assert host.startswith("web-")
    # Anonymous: refused, with a page that says why.
    anonymous = await get(port, started["wsproxy_addr"] + "/")
    assert anonymous.status_code == 401
    assert "open to its owner only" in anonymous.text
    # The token opens it once: a cookie for this app, and a redirect without the token.
    opened = await get(port, started["url"])
    assert opened.status_code == 302
    assert opened.headers["location"] == "/"
    cookie = opened.cookies
    assert len(cookie) == 1
    page = await get(port, started["wsproxy_addr"] + "/", cookies=dict(cookie))
    assert page.status_code == 200
    assert "Directory listing" in page.text
    # A forged token is refused, and the proxy keeps serving.
    forged = await get(port, started["url"][:-3] + "xyz")
    assert forged.status_code == 403
    assert "was refused: the signature does not match" in forged.text
    # The apps listing knows the app and its address.
    apps = (await cluster.api.request("GET", f"/stream/session/{sid}/apps")).json()
    assert {a["name"] for a in apps} == {"web", "web-public"}
    assert next(a for a in apps if a["name"] == "web")["url"] == started["wsproxy_addr"] + "/"
    # After destroy, the route is gone: 404.
    await cluster.api.destroy_session(sid)
    with trio.fail_after(30):
        while (  # noqa: ASYNC110 (polling a server over HTTP: no event to await)
            gone := await get(port, started["wsproxy_addr"] + "/", dict(cookie))
        ).status_code != 404:
            await trio.sleep(0.1)  # the reaper acts on the session's end
    assert f"no app is served at host '{host}'" in gone.text


async def test_a_public_app_needs_no_login(cluster: Cluster) -> None:
    _, started = await start_app(cluster, "web-public")
    page = await get(cluster.info.appproxy.port, started["wsproxy_addr"] + "/")
    assert page.status_code == 200
    assert "Directory listing" in page.text


async def test_a_cookie_of_one_app_does_not_open_another(cluster: Cluster) -> None:
    port = cluster.info.appproxy.port
    _, first = await start_app(cluster, "web")
    _, second = await start_app(cluster, "web")
    cookie = dict((await get(port, first["url"])).cookies)
    assert (await get(port, first["wsproxy_addr"] + "/", cookie)).status_code == 200
    other = await get(port, second["wsproxy_addr"] + "/", cookie)
    assert other.status_code == 401
    # The first app's token at the second app's Host: refused as meant for another app.
    token = urlsplit(first["url"]).query
    crossed = await get(port, f"{second['wsproxy_addr']}/?{token}")
    assert crossed.status_code == 403
    assert "it is for another app" in crossed.text


async def test_start_service_refuses_an_unknown_app(cluster: Cluster) -> None:
    created = await cluster.api.create_session(LOCAL_IMAGE, max_wait=30)
    await wait_status(cluster.api, created["sessionId"], "RUNNING", deadline=60)
    with pytest.raises(APIResponseError) as info:
        await cluster.api.request(
            "POST", f"/session/{created['sessionId']}/start-service", json={"app": "vscode"}
        )
    assert info.value.status == 400
    assert "app: invalid value 'vscode'" in str(info.value)
    assert "offers: web, web-public" in str(info.value)


async def test_a_restarted_proxy_rebuilds_its_routes_from_the_manager(
    cluster: Cluster, nursery: trio.Nursery
) -> None:
    _, started = await start_app(cluster, "web")
    # A fresh proxy process with the same id: empty table, then one announcement.
    registry = RouteRegistry("wildcard", domain=DOMAIN, public_host="", port=0, ports=range(0))
    secret = cluster.config.cluster.secret
    server = ProxyServer(
        registry, ProxySettings(), host="127.0.0.1", gate=AuthGate(secret.reveal(), cookie_ttl=60)
    )
    port = await nursery.start(server.serve)
    assert registry.apps == {}
    async with httpx.AsyncClient() as client:
        n = await announce_once(
            server,
            client,
            manager_url=cluster.endpoint,
            secret=secret,
            proxy_id=cluster.info.appproxy.id,
            api_url=cluster.info.appproxy.api_url,
        )
    assert n == 1
    cookie = dict((await get(port, started["url"])).cookies)
    page = await get(port, started["wsproxy_addr"] + "/", cookie)
    assert page.status_code == 200
    assert "Directory listing" in page.text


async def test_announcing_needs_the_cluster_secret(cluster: Cluster) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"{cluster.endpoint}/appproxy/announce",
            json={"id": "rogue", "api_url": "http://127.0.0.1:1", "mode": "port"},
            headers={"Authorization": "Bearer wrong"},
        )
    assert resp.status_code == 401
    assert "cluster secret" in resp.json()["msg"]


async def test_another_users_app_stays_closed(cluster: Cluster) -> None:
    port = cluster.info.appproxy.port
    query(
        cluster.config,
        "INSERT INTO keypairs (access_key, secret_key, user_id, role, is_active, created_at) "
        "VALUES ('AKIAOTHERUSER0000001', 'other-secret', 'other@example.com', 'user', 1, 0)",
    )
    my_sid, mine = await start_app(cluster, "web")
    my_cookie = dict((await get(port, mine["url"])).cookies)
    async with APIClient(cluster.endpoint, "AKIAOTHERUSER0000001", "other-secret") as other:
        _, theirs = await start_app(cluster, "web", other)
        # Not through the manager: my session is not theirs to start apps in.
        with pytest.raises(APIResponseError) as info:
            await other.request("POST", f"/session/{my_sid}/start-service", json={"app": "web"})
        assert info.value.status == 404
    # Not through the proxy: my cookie and my token are for my app only.
    assert (await get(port, theirs["wsproxy_addr"] + "/", my_cookie)).status_code == 401
    crossed = await get(port, f"{theirs['wsproxy_addr']}/?{urlsplit(mine['url']).query}")
    assert crossed.status_code == 403
    # Their own token works for them.
    assert (await get(port, theirs["url"])).status_code == 302


async def test_client_ranges_limit_a_public_app(cluster: Cluster) -> None:
    port = cluster.info.appproxy.port
    _, outside = await start_app(cluster, "web-public", allowed_client_ips=["10.0.0.0/8"])
    refused = await get(port, outside["wsproxy_addr"] + "/")
    assert refused.status_code == 403
    assert "the address 127.0.0.1 may not reach the app" in refused.text
    _, inside = await start_app(cluster, "web-public", allowed_client_ips=["127.0.0.0/8"])
    assert (await get(port, inside["wsproxy_addr"] + "/")).status_code == 200
    with pytest.raises(APIResponseError, match="allowed_client_ips: invalid value 'nowhere'"):
        await start_app(cluster, "web-public", allowed_client_ips=["nowhere"])


async def test_apps_spread_over_several_proxies(cluster: Cluster, nursery: trio.Nursery) -> None:
    """A second proxy joins by announcing itself; new apps go to the proxy with the fewest."""
    secret = cluster.config.cluster.secret
    registry = RouteRegistry("wildcard", domain=DOMAIN, public_host="", port=0, ports=range(0))
    second = ProxyServer(
        registry, ProxySettings(), host="127.0.0.1", gate=AuthGate(secret.reveal(), cookie_ttl=60)
    )
    second_port = await nursery.start(second.serve)
    listeners = await nursery.start(
        partial(trio.serve_tcp, RouteAPI(second, secret, "zz-second").handle, 0, host="127.0.0.1")
    )
    api_url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
    async with httpx.AsyncClient() as client:
        await announce_once(
            second, client, manager_url=cluster.endpoint, secret=secret, proxy_id="zz-second",
            api_url=api_url,
        )  # fmt: skip
    ports = set()
    for _ in range(4):
        _, started = await start_app(cluster, "web-public")
        port = urlsplit(started["url"]).port
        assert port is not None
        ports.add(port)
        page = await get(port, started["wsproxy_addr"] + "/")
        assert page.status_code == 200
    assert ports == {cluster.info.appproxy.port, second_port}
    assert len(registry.apps) == 2
