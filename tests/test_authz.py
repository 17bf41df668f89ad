"""Role boundaries over real HTTP: users, domain admins, delegation, resource groups, policies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from backendai.client.api import APIClient, APIResponseError
from backendai.db.tables import keypairs, sgroups_for_keypairs
from backendai.manager.policies import create_keypair_policy
from tests.accounts_fixtures import Account, add_account, add_domain, in_db
from tests.cluster import Cluster, cluster_config, open_cluster

IMAGE = "backendai/python:3.11"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(cluster_config(tmp_path)) as c:
        yield c


def _client(cluster: Cluster, who: Account) -> APIClient:
    return APIClient(cluster.endpoint, who.access_key, who.secret_key)


async def _status(call: Awaitable[Any]) -> tuple[int, str]:
    try:
        await call
    except APIResponseError as e:
        return e.status, e.msg
    return 200, ""


async def test_a_user_cannot_see_touch_or_list_another_users_session(cluster: Cluster) -> None:
    a = await add_account(cluster.config, "a@example.org")
    b = await add_account(cluster.config, "b@example.org")
    async with _client(cluster, a) as api_a, _client(cluster, b) as api_b:
        created = await api_a.create_session(IMAGE, "a-job")
        sid = created["sessionId"]
        mine = await api_a.get_session("a-job")
        assert mine["ownerAccessKey"] == a.access_key
        assert mine["domainName"] == "default"
        assert mine["groupId"]
        attempts: dict[str, Callable[[str], Awaitable[Any]]] = {
            "get": api_b.get_session,
            "destroy": api_b.destroy_session,
            "logs": api_b.get_logs,
            "execute": lambda ref: api_b.request(
                "POST", f"/session/{ref}", json={"mode": "query", "code": "print(1)"}
            ),
            "history": lambda ref: api_b.request("GET", f"/session/{ref}/status-history"),
        }
        for what, attempt in attempts.items():
            for ref in ("a-job", sid):
                status, msg = await _status(attempt(ref))
                never_status, never_msg = await _status(attempt("no-such-session"))
                # The same answer as for a name nobody has: existence does not leak.
                assert (status, never_status) == (404, 404), what
                assert msg.replace(ref, "X") == never_msg.replace("no-such-session", "X"), what
        assert await api_b.list_sessions() == []
        # Nor may B file a session under a project B is not a member of, or another domain.
        for field, value in (("group", "vision"), ("domain", "elsewhere")):
            body = {"image": IMAGE, "sessionName": "b-job", "enqueueOnly": True, field: value}
            status, msg = await _status(api_b.request("POST", "/session", json=body))
            assert status == 403, msg
            assert repr(value) in msg
        assert await api_b.list_sessions(all=True) == []  # `all` is for superadmins
        status, msg = await _status(
            api_b.request("GET", "/session", params={"owner_access_key": a.access_key})
        )
        assert status == 403
        assert "only administrators" in msg
        status, _ = await _status(
            api_b.request("GET", "/events/session", params={"ownerAccessKey": a.access_key})
        )
        assert status == 403
        # A's session is untouched by all of that.
        assert (await api_a.get_session(sid))["status"] not in ("TERMINATING", "TERMINATED")


async def test_a_domain_admin_acts_only_inside_the_domain(cluster: Cluster) -> None:
    await add_domain(cluster.config, "lab")
    admin = await add_account(cluster.config, "boss@lab.org", role="admin", domain="lab")
    member = await add_account(cluster.config, "member@lab.org", domain="lab")
    outsider = await add_account(cluster.config, "out@example.org")
    root = cluster.info.manager.credentials
    async with (
        _client(cluster, member) as api_member,
        _client(cluster, outsider) as api_out,
        _client(cluster, admin) as api_admin,
    ):
        await api_member.create_session(IMAGE, "member-job")
        await api_out.create_session(IMAGE, "out-job")
        own = await api_admin.request(
            "GET", "/session", params={"owner_access_key": member.access_key}
        )
        assert [s["sessionName"] for s in own.json()["sessions"]] == ["member-job"]
        info = await api_admin.request(
            "GET", "/session/member-job", params={"owner_access_key": member.access_key}
        )
        assert info.json()["ownerAccessKey"] == member.access_key
        for target in (outsider.access_key, root.access_key, "AKIANOSUCHKEY0000000"):
            for path in ("/session", "/session/out-job"):
                status, msg = await _status(
                    api_admin.request("GET", path, params={"owner_access_key": target})
                )
                assert status == 403, (target, path)
                assert "domain 'lab'" in msg
            status, _ = await _status(
                api_admin.request("DELETE", "/session/out-job", params={"owner_access_key": target})
            )
            assert status == 403
        # all=true lists the domain's sessions, and no others; no superadmin routes.
        every = await api_admin.list_sessions(all=True)
        assert [s["sessionName"] for s in every] == ["member-job"]
        status, _ = await _status(api_admin.request("GET", "/admin/resource-groups"))
        assert status == 403
        assert (await api_out.get_session("out-job"))["status"] not in ("TERMINATING", "TERMINATED")


async def test_resource_groups_open_through_the_keypair_and_policy_limits_hold_at_enqueue(
    cluster: Cluster,
) -> None:
    a = await add_account(cluster.config, "a@example.org")
    await cluster.api.request("POST", "/admin/resource-groups", json={"name": "private"})
    async with _client(cluster, a) as api:
        body = {"image": IMAGE, "sessionName": "private-job", "enqueueOnly": True}
        body["config"] = {"scalingGroup": "private"}
        status, msg = await _status(api.request("POST", "/session", json=body))
        assert status == 403, msg
        assert "'private' is not open to keypair" in msg
        assert "allowed: default" in msg
        await in_db(
            cluster.config,
            lambda c: c.execute(
                sgroups_for_keypairs.insert().values(
                    scaling_group="private", access_key=a.access_key
                )
            ),
        )
        assert (await api.request("POST", "/session", json=body)).status_code == 201

        def small_policy(c: sa.Connection) -> None:
            create_keypair_policy(
                c,
                "small",
                {"total_resource_slots": {"cpu": 1}, "max_pending_session_count": 1},
            )
            c.execute(
                keypairs.update()
                .where(keypairs.c.access_key == a.access_key)
                .values(resource_policy="small")
            )

        await in_db(cluster.config, small_policy)
        status, msg = await _status(
            api.create_session(IMAGE, "big-job", resources={"cpu": "2"}, enqueue_only=True)
        )
        assert status == 412, msg
        assert "keypair resource policy 'small'" in msg
        assert "cpu=1" in msg
        # One pending session ("private-job", in a group without agents) is all the policy allows.
        status, msg = await _status(api.create_session(IMAGE, "second", enqueue_only=True))
        assert status == 429
        assert "at most 1" in msg
