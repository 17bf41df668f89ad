"""The session REST API end to end, in one process, over real HTTP, on the dummy backend."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from backendai.client.api import APIClient, APIResponseError
from backendai.client.signing import sign_request

from .cluster import Cluster, cluster_config, open_cluster, query, wait_status
from .services import fresh_pg_database

IMAGE = "backendai/python:3.11"


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with open_cluster(cluster_config(tmp_path)) as c:
        yield c


async def test_create_info_list_destroy(cluster: Cluster) -> None:
    api = cluster.api
    created = await api.create_session(IMAGE, "first", resources={"cpu": "1", "mem": "1g"})
    assert created["status"] == "RUNNING"
    assert created["created"] is True
    info = await api.get_session("first")
    assert info["sessionId"] == created["sessionId"]
    assert info["status"] == "RUNNING"
    assert info["occupiedSlots"] == {"cpu": "1", "mem": str(1 << 30)}
    assert info["kernels"][0]["agent"] == cluster.info.agent.agent_id
    by_uuid = await api.get_session(created["sessionId"])
    assert by_uuid["sessionName"] == "first"
    listed = await api.list_sessions()
    assert [s["sessionName"] for s in listed] == ["first"]

    await api.destroy_session("first")
    await wait_status(api, "first", "TERMINATED")
    info = await api.get_session("first")
    assert info["statusInfo"] == "user-requested"
    assert info["occupiedSlots"] == {}
    assert (
        query(cluster.config, "SELECT count(*) FROM allocations WHERE released_at IS NULL")[0][0]
        == 0
    )
    # The name is free again once the session has ended.
    again = await api.create_session(IMAGE, "first")
    assert again["created"] is True
    assert again["sessionId"] != created["sessionId"]


async def test_history_records_every_transition(cluster: Cluster) -> None:
    s = await cluster.api.create_session(IMAGE, "hist")
    await cluster.api.destroy_session("hist")
    await wait_status(cluster.api, "hist", "TERMINATED")
    r = await cluster.api.request("GET", f"/session/{s['sessionId']}/status-history")
    statuses = [h["status"] for h in r.json()["result"] if h["kernelId"] is None]
    assert statuses == [
        "PENDING",
        "SCHEDULED",
        "PREPARING",
        "CREATING",
        "RUNNING",
        "TERMINATING",
        "TERMINATED",
    ]


async def test_reuse_and_conflict(cluster: Cluster) -> None:
    first = await cluster.api.create_session(IMAGE, "same")
    reused = await cluster.api.create_session(IMAGE, "same", reuse=True)
    assert reused["sessionId"] == first["sessionId"]
    assert reused["created"] is False
    with pytest.raises(APIResponseError) as e:
        await cluster.api.create_session(IMAGE, "same", reuse=False)
    assert e.value.status == 409
    assert "'same'" in e.value.msg


async def test_queue_when_full_then_start_when_freed(cluster: Cluster) -> None:
    api = cluster.api
    await api.create_session(IMAGE, "big-one", resources={"cpu": "3", "mem": "1g"})
    waiting = await api.create_session(
        IMAGE, "big-two", resources={"cpu": "3", "mem": "1g"}, max_wait=0.5
    )
    assert waiting["status"] == "TIMEOUT"
    info = await api.get_session("big-two")
    assert info["status"] == "PENDING"
    assert "largest free: cpu=1" in info["pendingReason"]
    await api.destroy_session("big-one")
    await wait_status(api, "big-two", "RUNNING")


async def test_enqueue_only_returns_pending(cluster: Cluster) -> None:
    r = await cluster.api.create_session(IMAGE, "queued", enqueue_only=True)
    assert r["status"] == "PENDING"
    await wait_status(cluster.api, "queued", "RUNNING")


async def test_destroy_pending_session_cancels_it(cluster: Cluster) -> None:
    await cluster.api.create_session(IMAGE, "hog-session", resources={"cpu": "4", "mem": "1g"})
    await cluster.api.create_session(IMAGE, "blocked", enqueue_only=True)
    r = await cluster.api.destroy_session("blocked")
    assert r["status"] == "CANCELLED"
    info = await cluster.api.get_session("blocked")
    assert info["status"] == "CANCELLED"
    assert info["statusInfo"] == "user-requested"


async def test_events_stream_follows_a_session(cluster: Cluster) -> None:
    api = cluster.api
    await api.create_session(IMAGE, "watched", enqueue_only=True)
    seen: list[str] = []

    async def destroy_when_running() -> None:
        await wait_status(api, "watched", "RUNNING")
        await api.destroy_session("watched")

    async with trio.open_nursery() as nursery, api.stream_events(session_name="watched") as events:
        nursery.start_soon(destroy_when_running)
        with trio.fail_after(15):
            async for ev in events:
                seen.append(ev.event)
                assert json.loads(ev.data)["sessionName"] == "watched"
    assert seen[-1] == "session_terminated"
    assert "session_terminating" in seen
    # A stream opened after the end reports the end at once.
    async with api.stream_events(session_name="watched") as events:
        late = [ev.event async for ev in events]
    assert late == ["session_terminated"]


async def test_owner_isolation(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.api.create_session(IMAGE, "private")
    query(
        cluster.config,
        "INSERT INTO keypairs (access_key, secret_key, user_id, role, is_active, created_at) "
        "VALUES ('AKIAOTHERUSER0000001', 'other-secret', 'other@example.com', 'user', 1, 0)",
    )
    async with APIClient(cluster.endpoint, "AKIAOTHERUSER0000001", "other-secret") as other:
        with pytest.raises(APIResponseError) as e:
            await other.get_session("private")
        assert e.value.status == 404
        with pytest.raises(APIResponseError) as e2:
            await other.get_session("never-existed")
        # The same answer whether or not another user's session has that name.
        assert (e.value.status, e.value.slug) == (e2.value.status, e2.value.slug)
        assert await other.list_sessions() == []
        with pytest.raises(APIResponseError) as e3:
            await other.request(
                "GET", "/session", params={"owner_access_key": cluster.api.access_key}
            )
        assert e3.value.status == 403


# --- bad input: a clear problem+json error, and nothing changes -------------------------


def _session_count(cluster: Cluster) -> int:
    return int(query(cluster.config, "SELECT count(*) FROM sessions")[0][0])


async def _raw_post(
    cluster: Cluster, body: bytes, *, date: datetime | None = None, secret: str | None = None
) -> httpx.Response:
    creds = cluster.info.manager.credentials
    date_value = (date or datetime.now(UTC)).isoformat()
    host = cluster.endpoint.split("//", 1)[1]
    auth = sign_request(
        "POST",
        "/session",
        date_value,
        host,
        "application/json",
        "v7.20230615",
        creds.access_key,
        secret or creds.secret_key,
    )
    headers = {
        "Date": date_value,
        "Content-Type": "application/json",
        "X-BackendAI-Version": "v7.20230615",
        "Authorization": auth,
    }
    async with httpx.AsyncClient() as http:
        return await http.post(cluster.endpoint + "/session", content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "status", "slug", "words"),
    [
        (b"{not json", 400, "invalid-api-params", ["not valid JSON"]),
        (b'["a list"]', 400, "invalid-api-params", ["JSON object"]),
        (b'{"sessionName": "x1234"}', 400, "invalid-api-params", ["image: missing"]),
        (b'{"image": "no/such:image"}', 404, "image-not-found", ["'no/such:image'", IMAGE]),
        (
            b'{"image": "backendai/python:3.11", "config": {"resources": {"cpu": 64, "mem": "512g"}}}',
            412,
            "insufficient-resources",
            ["'default'", "cpu=64 mem=512g", "largest: cpu=4 mem=8g"],
        ),
        (
            b'{"image": "backendai/python:3.11", "config": {"resources": {"gpu": 1}}}',
            400,
            "invalid-api-params",
            ["'gpu'", "cuda.device"],
        ),
        (
            b'{"image": "backendai/python:3.11", "config": {"resources": {"mem": "lots"}}}',
            400,
            "invalid-api-params",
            ["'lots'"],
        ),
        (
            b'{"image": "backendai/python:3.11", "sessionName": "a b"}',
            400,
            "invalid-api-params",
            ["'a b'"],
        ),
        (
            b'{"image": "backendai/python:3.11", "config": {"scalingGroup": "nope"}}',
            400,
            "invalid-api-params",
            ["'nope'", "default"],
        ),
        (
            b'{"image": "backendai/python:3.11", "clusterSize": 0}',
            400,
            "invalid-api-params",
            ["clusterSize"],
        ),
    ],
)
async def test_bad_create_requests(
    cluster: Cluster, body: bytes, status: int, slug: str, words: list[str]
) -> None:
    before = _session_count(cluster)
    r = await _raw_post(cluster, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"] == f"https://api.backend.ai/probs/{slug}"
    assert problem["title"]
    for w in words:
        assert w in problem["msg"]
    assert _session_count(cluster) == before


async def test_bad_signatures_are_refused(cluster: Cluster) -> None:
    before = _session_count(cluster)
    ok_body = json.dumps({"image": IMAGE, "sessionName": "sneaky"}).encode()
    wrong = await _raw_post(cluster, ok_body, secret="not-the-secret")
    assert wrong.status_code == 401
    assert "signature mismatch" in wrong.json()["msg"]
    expired = await _raw_post(cluster, ok_body, date=datetime.now(UTC) - timedelta(minutes=20))
    assert expired.status_code == 401
    assert "window" in expired.json()["msg"]
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(cluster.endpoint + "/session", content=ok_body)
    assert unsigned.status_code == 401
    assert unsigned.json()["type"].endswith("/auth-failed")
    assert _session_count(cluster) == before


async def test_unknown_session_id(cluster: Cluster) -> None:
    for ref in ("no-such-session", "3f2b8a52-0000-4000-8000-000000000000"):
        for method in ("GET", "DELETE"):
            with pytest.raises(APIResponseError) as e:
                await cluster.api.request(method, f"/session/{ref}")
            assert e.value.status == 404
            assert e.value.slug == "session-not-found"
            assert ref in e.value.msg


async def test_version_probe_is_unsigned(cluster: Cluster) -> None:
    assert (await cluster.api.get_version())["version"] == "v7.20230615"


async def test_lifecycle_on_postgresql(tmp_path: Path) -> None:
    """The same manager on PostgreSQL: migrations, row locks, the whole lifecycle."""
    with fresh_pg_database() as url:
        config = cluster_config(tmp_path, manager={"db_url": url})
        async with open_cluster(config) as c:
            await c.api.create_session(IMAGE, "on-pg-1", resources={"cpu": "3", "mem": "1g"})
            r = await c.api.create_session(
                IMAGE, "on-pg-2", resources={"cpu": "3", "mem": "1g"}, max_wait=0.3
            )
            assert r["status"] == "TIMEOUT"
            await c.api.destroy_session("on-pg-1")
            await wait_status(c.api, "on-pg-2", "RUNNING")
            await wait_status(c.api, "on-pg-1", "TERMINATED")
            rows = query(config, "SELECT count(*) FROM allocations WHERE released_at IS NULL")
            assert rows[0][0] == 1
