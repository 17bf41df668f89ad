"""The admin GraphQL API: the official client's listing commands, and who may do what.

The official client (23.9.10, unmodified, in its own venv) runs as a subprocess
against an all-in-one cluster in this process; its tables are checked against
what the cluster's database holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from backendai.client.api import APIClient
from backendai.db.tables import keypairs
from tests.accounts_fixtures import Account, add_account, add_domain, in_db
from tests.cluster import Cluster, client_env, cluster_config, open_cluster

IMAGE = "backendai/python:3.11"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(cluster_config(tmp_path / "data")) as c:
        yield c


async def _official(python: Path, cluster: Cluster, home: Path, *args: str) -> str:
    env = client_env(cluster, home)
    with trio.fail_after(120):
        done = await trio.run_process(
            [str(python), str(python.parent / "backend.ai"), *args],
            env=env,
            cwd=home,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = done.stdout.decode()
    assert done.returncode == 0, f"backend.ai {' '.join(args)}:\n{out}\n{done.stderr.decode()}"
    return out


def _rows(table: str) -> list[dict[str, str]]:
    """The rows of a table the client printed (header, dashes, rows; columns by the dashes)."""
    lines = [line for line in table.splitlines() if line.strip()]
    dash_at = next(i for i, line in enumerate(lines) if set(line) <= {"-", " "})
    spans, start = [], 0
    for part in lines[dash_at].split("  "):
        spans.append((start, start + len(part)))
        start += len(part) + 2

    def cut(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in spans]

    header = cut(lines[dash_at - 1])
    return [dict(zip(header, cut(line), strict=True)) for line in lines[dash_at + 1 :]]


@pytest.mark.slow
async def test_official_client_lists_match_the_database(
    official_python: Path, cluster: Cluster, tmp_path: Path
) -> None:
    ann = await add_account(cluster.config, "ann@example.org")
    root = cluster.info.manager.credentials
    mine = await cluster.api.create_session(IMAGE, "root-job", resources={"cpu": "1", "mem": "1g"})
    async with APIClient(cluster.endpoint, ann.access_key, ann.secret_key) as api:
        theirs = await api.create_session(IMAGE, "ann-job")

    ps = _rows(await _official(official_python, cluster, tmp_path, "ps"))
    by_name = {r["Name"]: r for r in ps}
    assert set(by_name) == {"root-job", "ann-job"}  # a superadmin sees every session
    assert by_name["root-job"]["Session ID"] == mine["sessionId"]
    assert by_name["root-job"]["Owner Access Key"] == root.access_key
    assert by_name["ann-job"]["Session ID"] == theirs["sessionId"]
    assert by_name["ann-job"]["Owner Access Key"] == ann.access_key
    assert {r["Status"] for r in ps} == {"RUNNING"}
    # Both owners are members of the default project, which sessions then count against.
    assert {r["Project/Group"] for r in ps} == {"default"}
    assert {r["Image"] for r in ps} == {IMAGE}

    agents = _rows(await _official(official_python, cluster, tmp_path, "admin", "agent", "list"))
    assert [a["ID"] for a in agents] == [cluster.config.agent.id]
    agent = agents[0]
    assert (agent["Status"], agent["Scaling Group"], agent["Architecture"]) == (
        "ALIVE",
        "default",
        "x86_64",
    )
    assert agent["Available Slots"] == "cpu:4.0, mem:8.0G"  # cluster_config: cpu 4, mem 8g
    # Two sessions hold the default 1 core / 1 GiB each.
    assert agent["Occupied Slots"] == "cpu:2, mem:2.0G"

    users = _rows(await _official(official_python, cluster, tmp_path, "admin", "user", "list"))
    assert {(u["Email"], u["Role"], u["Status"], u["Domain Name"]) for u in users} == {
        ("admin@backend.ai", "superadmin", "active", "default"),
        ("ann@example.org", "user", "active", "default"),
    }
    main_keys = {u["Email"]: u["Main Access Key"] for u in users}
    assert main_keys == {"admin@backend.ai": root.access_key, "ann@example.org": ann.access_key}

    kps = _rows(await _official(official_python, cluster, tmp_path, "admin", "keypair", "list"))
    by_key = {k["Access Key"]: k for k in kps}
    assert set(by_key) == {root.access_key, ann.access_key}
    assert by_key[ann.access_key]["Email"] == "ann@example.org"
    assert (by_key[ann.access_key]["Admin?"], by_key[root.access_key]["Admin?"]) == (
        "False",
        "True",
    )
    assert by_key[ann.access_key]["Secret Key"] == ann.secret_key
    assert by_key[ann.access_key]["Concur.Used"] == "1"
    assert by_key[ann.access_key]["Rate Limit"] == "30000"  # the manager's default
    assert by_key[ann.access_key]["Last Used"].startswith("20")  # it signed a request


@pytest.mark.slow
async def test_official_client_admin_commands_create_and_show(
    official_python: Path, cluster: Cluster, tmp_path: Path
) -> None:
    run = lambda *args: _official(official_python, cluster, tmp_path, "admin", *args)  # noqa: E731
    added = await run("user", "add", "default", "bob@example.org", "bob-password-1", "-u", "bob")
    assert "success" in added
    await run("keypair", "add", "bob@example.org", "default", "-r", "500")
    await run("keypair-resource-policy", "add", "small", "--total-resource-slots", '{"cpu": 2}')

    def bob_keys(c: sa.Connection) -> list[Any]:
        q = sa.select(keypairs.c.access_key, keypairs.c.rate_limit).where(
            keypairs.c.user_id == "bob@example.org"
        )
        return list(c.execute(q.order_by(keypairs.c.created_at)))

    keys = await in_db(cluster.config, bob_keys)
    assert [k.rate_limit for k in keys] == [0, 500]  # one made with the user, one added
    policies = _rows(await run("keypair-resource-policy", "list"))
    # The client prints this JSONString as it comes.
    assert {p["Name"]: p["Total Resource Slots"] for p in policies} == {
        "default": "{}",
        "small": '{"cpu": "2"}',
    }
    groups = _rows(await run("scaling-group", "list"))
    assert [(g["Name"], g["Active?"], g["Scheduler"]) for g in groups] == [
        ("default", "True", "fifo")
    ]
    images = _rows(await run("image", "list"))
    assert [i["Name"] for i in images] == [IMAGE]
    info = await run("agent", "info", cluster.config.agent.id)
    assert cluster.config.agent.id in info
    assert "ALIVE" in info
    # (With no sessions at all this client version fails on a pipe: NoItems escapes.)
    made = await cluster.api.create_session(IMAGE, "listed-job")
    sessions = _rows(await run("session", "list"))
    assert [(s["Name"], s["Session ID"]) for s in sessions] == [("listed-job", made["sessionId"])]


async def _gql(api: APIClient, query: str, **variables: Any) -> dict[str, Any]:
    body = await api.request("POST", "/admin/gql", json={"query": query, "variables": variables})
    answer: dict[str, Any] = body.json()
    return answer


def _denied(answer: dict[str, Any]) -> str:
    assert answer.get("errors"), answer
    message: str = answer["errors"][0]["message"]
    return message


MODIFY = """mutation($access_key: String!, $input: ModifyKeyPairInput!) {
  modify_keypair(access_key: $access_key, props: $input) { ok msg } }"""


async def test_who_may_see_and_change_what(cluster: Cluster) -> None:
    await add_domain(cluster.config, "lab")
    ann = await add_account(cluster.config, "ann@example.org")
    boss = await add_account(cluster.config, "boss@lab.org", role="admin", domain="lab")
    await add_account(cluster.config, "member@lab.org", domain="lab")
    await cluster.api.create_session(IMAGE, "root-job")

    def client(a: Account) -> APIClient:
        return APIClient(cluster.endpoint, a.access_key, a.secret_key)

    async with client(ann) as user, client(boss) as admin:
        me = await _gql(user, "query { keypair { access_key is_admin resource_policy } }")
        assert me["data"]["keypair"] == {
            "access_key": ann.access_key,
            "is_admin": False,
            "resource_policy": "default",
        }
        listed = await _gql(
            user,
            "query($limit: Int!, $offset: Int!) { compute_session_list(limit: $limit, "
            "offset: $offset) { items { name } total_count } }",
            limit=10,
            offset=0,
        )
        assert listed["data"]["compute_session_list"] == {"items": [], "total_count": 0}
        async with APIClient(cluster.endpoint, ann.access_key, ann.secret_key) as mine:
            await mine.create_session(IMAGE, "ann-job")
        by_filter = (
            "query($d: String, $g: String) { compute_session_list(limit: 10, offset: 0, "
            "domain_name: $d, group_id: $g) { items { name group_name domain_name } } }"
        )
        found = await _gql(user, by_filter, d="default", g=None)
        assert found["data"]["compute_session_list"]["items"] == [
            {"name": "ann-job", "group_name": "default", "domain_name": "default"}
        ]
        assert (await _gql(user, by_filter, d="lab", g=None))["data"]["compute_session_list"][
            "items"
        ] == []
        for query in (
            "query { keypairs { access_key } }",
            "query { agents { id } }",
            "query { users { email } }",
            "query { keypair_resource_policies { name } }",
        ):
            assert "only a" in _denied(await _gql(user, query)), query
        # A user cannot raise their own policy or rate limit.
        for change in ({"resource_policy": "default"}, {"rate_limit": 10**6}):
            denied = _denied(await _gql(user, MODIFY, access_key=ann.access_key, input=change))
            assert "only an administrator" in denied
        denied = _denied(
            await _gql(
                user,
                'mutation { modify_keypair_resource_policy(name: "default", '
                "props: {max_concurrent_sessions: 100}) { ok msg } }",
            )
        )
        assert "only a superadmin" in denied

        users = await _gql(admin, "query { users { email domain_name } }")
        assert sorted(u["email"] for u in users["data"]["users"]) == [
            "boss@lab.org",
            "member@lab.org",
        ]
        outside = await _gql(admin, 'query { users(domain_name: "default") { email } }')
        assert "outside 'lab'" in _denied(outside)
        # Nor does a domain admin raise their own (or anyone's) limits.
        denied = _denied(
            await _gql(admin, MODIFY, access_key=boss.access_key, input={"rate_limit": 10**6})
        )
        assert "only a superadmin" in denied
        # A domain admin of "default" may not switch off the superadmin's keypair either.
        chief = await add_account(cluster.config, "chief@example.org", role="admin")
        async with client(chief) as default_admin:
            root_key = cluster.info.manager.credentials.access_key
            off = {"is_active": False}
            denied = _denied(await _gql(default_admin, MODIFY, access_key=root_key, input=off))
            assert "superadmin's keypair" in denied
        create = (
            "mutation($email: String!, $input: UserInput!) { create_user(email: $email, "
            "props: $input) { ok msg user { email domain_name main_access_key } } }"
        )
        elsewhere = {"password": "long-enough-1", "domain_name": "default"}
        assert "outside 'lab'" in _denied(
            await _gql(admin, create, email="x@default.org", input=elsewhere)
        )
        root_too = {"password": "long-enough-1", "domain_name": "lab", "role": "superadmin"}
        assert "only a superadmin" in _denied(
            await _gql(admin, create, email="x@lab.org", input=root_too)
        )
        made = await _gql(
            admin,
            create,
            email="new@lab.org",
            input={"password": "long-enough-1", "domain_name": "lab"},
        )
        result = made["data"]["create_user"]
        assert result["ok"]
        assert result["user"]["domain_name"] == "lab"
        assert result["user"]["main_access_key"].startswith("AKIA")
        short = await _gql(
            admin, create, email="s@lab.org", input={"password": "short", "domain_name": "lab"}
        )
        assert short["data"]["create_user"] == {
            "ok": False,
            "msg": "password: too short; expected at least 8 characters",
            "user": None,
        }
        sessions = await _gql(
            admin,
            "query($limit: Int!, $offset: Int!) { compute_session_list(limit: $limit, "
            "offset: $offset) { total_count } }",
            limit=10,
            offset=0,
        )
        assert sessions["data"]["compute_session_list"]["total_count"] == 0  # root's is outside

    moved = await _gql(cluster.api, MODIFY, access_key=ann.access_key, input={"rate_limit": 5})
    assert moved["data"]["modify_keypair"] == {"ok": True, "msg": "success"}
    bad = await _gql(
        cluster.api,
        "mutation($name: String!, $input: CreateKeyPairResourcePolicyInput!) { "
        "create_keypair_resource_policy(name: $name, props: $input) { ok msg } }",
        name="broken",
        input={"total_resource_slots": '{"cpu": "lots"}'},
    )
    outcome = bad["data"]["create_keypair_resource_policy"]
    assert not outcome["ok"]
    assert "'lots'" in outcome["msg"]
