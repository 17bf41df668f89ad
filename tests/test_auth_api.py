"""Authentication over real HTTP against an in-process cluster: login, roles, failures, rate limits."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from backendai.client.api import APIClient, APIResponseError
from backendai.client.signing import sign_request
from backendai.manager.ratelimit import MemoryRateWindow, RateWindow
from tests.accounts_fixtures import add_account
from tests.cluster import Cluster, cluster_config, open_cluster
from tests.services import redis_bus, redis_url, require_redis

VERSION = "v7.20230615"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(cluster_config(tmp_path)) as c:
        yield c


async def _authorize(endpoint: str, **body: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=endpoint) as http:
        return await http.post("/auth/authorize", json=body)


async def test_password_login_role_and_password_change(cluster: Cluster) -> None:
    ann = await add_account(cluster.config, "ann@example.org")
    resp = await _authorize(
        cluster.endpoint,
        type="keypair",
        domain="default",
        username=ann.email,
        password=ann.password,
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data == {
        "access_key": ann.access_key,
        "secret_key": ann.secret_key,
        "role": "user",
        "status": "active",
    }

    wrong = await _authorize(cluster.endpoint, username=ann.email, password="not-it-at-all")
    nobody = await _authorize(cluster.endpoint, username="nobody@x.org", password="not-it-at-all")
    other_domain = await _authorize(
        cluster.endpoint, domain="elsewhere", username=ann.email, password=ann.password
    )
    for r in (wrong, nobody, other_domain):
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert "with that password" in r.json()["msg"]
        assert ann.password not in r.text

    async with APIClient(cluster.endpoint, ann.access_key, ann.secret_key) as api:
        role = (await api.request("GET", "/auth/role")).json()
        assert role == {"global_role": "user", "domain_role": "user"}
        with pytest.raises(APIResponseError) as bad_old:
            await api.request(
                "POST",
                "/auth/update-password",
                json={
                    "old_password": "guess-guess",
                    "new_password": "n3w-pass",
                    "new_password2": "n3w-pass",
                },
            )
        assert bad_old.value.status == 401
        with pytest.raises(APIResponseError) as differ:
            await api.request(
                "POST",
                "/auth/update-password",
                json={
                    "old_password": ann.password,
                    "new_password": "n3w-pass",
                    "new_password2": "other-1",
                },
            )
        assert (differ.value.status, "differs" in str(differ.value)) == (400, True)
        await api.request(
            "POST",
            "/auth/update-password",
            json={
                "old_password": ann.password,
                "new_password": "n3w-pass",
                "new_password2": "n3w-pass",
            },
        )
    assert (await _authorize(cluster.endpoint, username=ann.email, password="n3w-pass")).is_success
    old = await _authorize(cluster.endpoint, username=ann.email, password=ann.password)
    assert old.status_code == 401

    role = (await cluster.api.request("GET", "/auth/role")).json()
    assert role == {"global_role": "superadmin", "domain_role": "admin"}


def _signed(
    endpoint: str,
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    *,
    date: datetime | None = None,
    signed_path: str | None = None,
) -> dict[str, str]:
    host = httpx.URL(endpoint).netloc.decode()
    date_value = (date or datetime.now(UTC)).isoformat()
    auth = sign_request(
        method,
        signed_path or path,
        date_value,
        host,
        "application/octet-stream",
        VERSION,
        access_key,
        secret_key,
    )
    return {"Date": date_value, "X-BackendAI-Version": VERSION, "Authorization": auth}


async def test_every_auth_failure_is_a_401_naming_the_problem_and_logs_no_secret(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ann = await add_account(cluster.config, "ann@example.org")
    off = await add_account(cluster.config, "off@example.org", status="inactive")
    ep = cluster.endpoint

    def dated(minutes: float) -> dict[str, str]:
        when = datetime.now(UTC) + timedelta(minutes=minutes)
        return _signed(ep, ann.access_key, ann.secret_key, "GET", "/session", date=when)

    cases: dict[str, tuple[str, dict[str, str], str]] = {
        "wrong secret": (
            "/session",
            _signed(ep, ann.access_key, "x" * 40, "GET", "/session"),
            "signature mismatch",
        ),
        "altered path": (
            "/session/other",
            _signed(
                ep, ann.access_key, ann.secret_key, "GET", "/session/other", signed_path="/session"
            ),
            "signature mismatch",
        ),
        "altered query": (
            "/session?all=true",
            _signed(
                ep,
                ann.access_key,
                ann.secret_key,
                "GET",
                "/session?all=true",
                signed_path="/session?all=false",
            ),
            "signature mismatch",
        ),
        "date too old": ("/session", dated(-20), "behind the server time"),
        "date ahead": ("/session", dated(16), "ahead of the server time"),
        "unknown key": (
            "/session",
            _signed(ep, "AKIANOSUCHKEY0000000", ann.secret_key, "GET", "/session"),
            "unknown or inactive",
        ),
        "inactive user": (
            "/session",
            _signed(ep, off.access_key, off.secret_key, "GET", "/session"),
            "unknown or inactive",
        ),
    }
    no_version = _signed(ep, ann.access_key, ann.secret_key, "GET", "/session")
    del no_version["X-BackendAI-Version"]
    cases["missing version"] = ("/session", no_version, "missing X-BackendAI-Version")
    async with httpx.AsyncClient(base_url=ep) as http:
        good = await http.get(
            "/session", headers=_signed(ep, ann.access_key, ann.secret_key, "GET", "/session")
        )
        assert good.status_code == 200, good.text
        for what, (path, headers, message) in cases.items():
            r = await http.get(path, headers=headers)
            assert r.status_code == 401, (what, r.text)
            assert r.json()["type"].endswith("/auth-failed"), what
            assert message in r.json()["msg"], (what, r.json()["msg"])
    logged = caplog.text
    assert "refused GET /session" in logged
    for secret in (
        ann.secret_key,
        off.secret_key,
        ann.password,
        cluster.info.manager.credentials.secret_key,
    ):
        assert secret not in logged


async def test_rate_limit_headers_count_down_then_429(cluster: Cluster) -> None:
    bob = await add_account(cluster.config, "bob@example.org", rate_limit=3)
    async with APIClient(cluster.endpoint, bob.access_key, bob.secret_key) as api:
        seen = []
        for _ in range(3):
            r = await api.request("GET", "/session")
            seen.append(
                (
                    r.headers["X-RateLimit-Limit"],
                    r.headers["X-RateLimit-Remaining"],
                    r.headers["X-RateLimit-Window"],
                )
            )
        assert seen == [("3", "2", "900"), ("3", "1", "900"), ("3", "0", "900")]
        with pytest.raises(APIResponseError) as refused:
            await api.request("GET", "/session")
    assert refused.value.status == 429
    assert "its limit is 3 per window" in str(refused.value)
    headers = _signed(cluster.endpoint, bob.access_key, bob.secret_key, "GET", "/session")
    async with httpx.AsyncClient(base_url=cluster.endpoint) as http:
        again = await http.get("/session", headers=headers)
    assert again.status_code == 429  # the refusal carries the window too
    assert (again.headers["X-RateLimit-Limit"], again.headers["X-RateLimit-Remaining"]) == (
        "3",
        "0",
    )
    # Another keypair has its own window, with the default limit.
    r = await cluster.api.request("GET", "/session")
    assert r.headers["X-RateLimit-Limit"] == "30000"


@pytest.mark.redis
async def test_managers_on_redis_share_the_rate_window(tmp_path: Path) -> None:
    require_redis()
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    bus = {"kind": "redis", "redis_url": redis_url(), "prefix": prefix}
    async with open_cluster(cluster_config(tmp_path, bus=bus)) as cluster:
        bob = await add_account(cluster.config, "bob@example.org", rate_limit=2)
        async with APIClient(cluster.endpoint, bob.access_key, bob.secret_key) as api:
            await api.request("GET", "/session")
            await api.request("GET", "/session")
            with pytest.raises(APIResponseError) as refused:
                await api.request("GET", "/session")
        assert refused.value.status == 429
    # The count lives in Redis, where another manager on the same Redis reads it.
    async with redis_bus(prefix=prefix) as shared:
        assert await shared.hit(bob.access_key, time.time(), 900.0) == 4


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def window(request: pytest.FixtureRequest) -> AsyncIterator[RateWindow]:
    if request.param == "memory":
        yield MemoryRateWindow()
        return
    require_redis()
    async with redis_bus() as bus:
        yield bus


async def test_sliding_window_counts_only_the_last_window(window: RateWindow) -> None:
    counts = [await window.hit("AK1", t, 10.0) for t in (100.0, 101.0, 105.0, 109.5)]
    assert counts == [1, 2, 3, 4]
    assert await window.hit("AK2", 109.6, 10.0) == 1  # keys are separate
    # At 111 the hits at 100 and 101 have left the window (a sliding log, not buckets).
    assert await window.hit("AK1", 111.0, 10.0) == 3
    assert await window.hit("AK1", 200.0, 10.0) == 1
