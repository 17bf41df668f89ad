"""Resource groups through the admin API and CLI, and scheduling policy seen by users:
queueing with the reason, dependencies, start times, preemptible sessions.  Real HTTP
against an in-process cluster (one dummy agent: cpu=4 mem=8g)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from backendai.client.api import APIClient
from backendai.client.cli_admin_groups import apply_option

from .cluster import (
    Cluster,
    add_user,
    call,
    cluster_config,
    open_cluster,
    query,
    refused,
    run_cli,
    wait_status,
)

IMAGE = "backendai/python:3.11"


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with open_cluster(cluster_config(tmp_path)) as c:
        yield c


def groups_table(cluster: Cluster) -> list[Any]:
    return query(
        cluster.config,
        "SELECT name, scheduler, agent_selector, options FROM resource_groups ORDER BY name",
    )


async def test_create_list_update_a_group(cluster: Cluster) -> None:
    api = cluster.api
    [default] = (await call(api, "GET", "/admin/resource-groups"))["resourceGroups"]
    assert (default["name"], default["agents"], default["pending"]) == ("default", 1, 0)
    assert Decimal(default["capacity"]["cpu"]) == 4
    body = {
        "name": "gpu",
        "sequencer": "drf",
        "agentSelector": "dispersed",
        "options": {"hol_blocking": True, "keypair_limits": {"max_concurrent_sessions": 2}},
    }
    created = (await call(api, "POST", "/admin/resource-groups", json=body))["resourceGroup"]
    assert (created["sequencer"], created["agentSelector"], created["agents"]) == (
        "drf",
        "dispersed",
        0,
    )
    updated = (
        await call(
            api,
            "PATCH",
            "/admin/resource-groups/gpu",
            json={
                "sequencer": "fair-share",
                "options": {"preemption": "requeue"},
                "isActive": False,
            },
        )
    )["resourceGroup"]
    assert (updated["sequencer"], updated["agentSelector"]) == ("fair-share", "dispersed")
    assert (updated["options"], updated["isActive"]) == ({"preemption": "requeue"}, False)
    assert (await call(api, "GET", "/admin/resource-groups/gpu"))["resourceGroup"] == updated


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "/admin/resource-groups", {"name": "x", "sequencer": "best"}, 400, ["unknown sequencer 'best'", "drf", "fair-share"]),
        ("POST", "/admin/resource-groups", {"name": "x", "agentSelector": "random"}, 400, ["unknown agent selector 'random'", "roundrobin"]),
        ("POST", "/admin/resource-groups", {"name": "x", "options": {"hol": True}}, 400, ["unknown key 'hol'", "hol_blocking"]),
        ("POST", "/admin/resource-groups", {"name": "x", "options": {"hol_blocking": "yes"}}, 400, ["hol_blocking: invalid value 'yes'"]),
        ("POST", "/admin/resource-groups", {"name": "x", "options": {"preemption": "kill"}}, 400, ["preemption: invalid value 'kill'", "requeue"]),
        ("POST", "/admin/resource-groups", {"name": "x", "options": {"validators": ["quota", "vibes"]}}, 400, ["unknown validator 'vibes'", "starts-at"]),
        ("POST", "/admin/resource-groups", {"name": "x", "options": {"keypair_limits": {"total_resource_slots": {"gpu": 1}}}}, 400, ["unknown resource slot 'gpu'", "cuda.device"]),
        ("POST", "/admin/resource-groups", {"name": "no spaces"}, 400, ["name: invalid value 'no spaces'"]),
        ("POST", "/admin/resource-groups", {"name": "default"}, 409, ["'default' already exists"]),
        ("POST", "/admin/resource-groups", {"name": "x", "colour": "red"}, 400, ["colour: unknown field"]),
        ("PATCH", "/admin/resource-groups/nope", {"sequencer": "drf"}, 404, ["no resource group 'nope'", "default"]),
        ("PATCH", "/admin/resource-groups/default", {"name": "other"}, 400, ["cannot be renamed"]),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_clearly_and_changes_nothing(
    cluster: Cluster, method: str, path: str, body: dict[str, Any], status: int, words: list[str]
) -> None:
    before = groups_table(cluster)
    e = await refused(cluster.api, method, path, json=body)
    assert e.status == status
    for w in words:
        assert w in e.msg
    assert groups_table(cluster) == before


async def test_only_a_superadmin_manages_groups(cluster: Cluster) -> None:
    async with await add_user(cluster, "u@example.com") as user:
        for method, path in [
            ("GET", "/admin/resource-groups"),
            ("POST", "/admin/resource-groups"),
            ("PATCH", "/admin/resource-groups/default"),
        ]:
            e = await refused(user, method, path, json={"name": "x"})
            assert (e.status, e.slug) == (403, "forbidden")
            assert "only a superadmin" in e.msg


async def pending(api: APIClient, ref: str) -> dict[str, Any]:
    """Poll until the scheduler has said why session *ref* waits; its info then."""
    with trio.fail_after(10):
        while True:
            info = await api.get_session(ref)
            if info["pendingReason"]:
                return info
            await trio.sleep(0.05)  # polling a server over HTTP: there is no event to await


async def post_session(api: APIClient, name: str, **extra: Any) -> dict[str, Any]:
    body = {"image": IMAGE, "sessionName": name, "enqueueOnly": True, **extra}
    return (await api.request("POST", "/session", json=body)).json()  # type: ignore[no-any-return]


async def test_a_queued_session_says_which_check_holds_it(cluster: Cluster) -> None:
    api = cluster.api
    await call(
        api,
        "PATCH",
        "/admin/resource-groups/default",
        json={"options": {"keypair_limits": {"max_concurrent_sessions": 1}}},
    )
    await post_session(api, "first")
    await wait_status(api, "first", "RUNNING")
    await post_session(api, "second")
    info = await pending(api, "second")
    assert info["pendingReason"] == (
        f"concurrency: keypair {api.access_key} has 1 of at most 1 concurrent sessions in "
        "resource group 'default' (limit from resource group 'default' option keypair_limits)"
    )
    await api.destroy_session("first")
    await wait_status(api, "second", "RUNNING")


async def test_dependencies_start_times_and_preemptible_from_post_session(
    cluster: Cluster,
) -> None:
    api = cluster.api
    await post_session(api, "prep")
    await wait_status(api, "prep", "RUNNING")
    after = await post_session(api, "train", dependencies=["prep"], preemptible=True)
    info = await pending(api, "train")
    assert (
        info["pendingReason"]
        == "dependencies: waiting for 1 dependencies to finish: prep (RUNNING)"
    )
    assert info["preemptible"] is True
    await api.destroy_session("prep")  # ends successfully
    await wait_status(api, after["sessionId"], "RUNNING")
    later = await post_session(api, "nightly", type="batch", startupCommand="true", startsAt="2h")
    info = await api.get_session(later["sessionId"])
    assert info["startsAt"] is not None
    info = await pending(api, "nightly")
    assert info["pendingReason"].startswith("starts-at: batch session is to start at ")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"dependencies": ["ghost"]}, ["dependencies[0]: no session 'ghost' found"]),
        ({"dependencies": "prep"}, ["dependencies: invalid value 'prep'", "list"]),
        ({"startsAt": "2h"}, ["startsAt: only a batch session can start later"]),
        ({"type": "batch", "startupCommand": "true", "startsAt": "soon"}, ["startsAt: invalid value 'soon'", "ISO 8601"]),
        ({"preemptible": "yes"}, ["preemptible: invalid value 'yes'"]),
        ({"config": {"resources": {"tpu.device": 1}}}, ["unknown resource slot 'tpu.device'", "cuda.device"]),
    ],
)  # fmt: skip
async def test_bad_scheduling_fields_are_refused(
    cluster: Cluster, extra: dict[str, Any], words: list[str]
) -> None:
    before = query(cluster.config, "SELECT count(*) FROM sessions")[0][0]
    e = await refused(
        cluster.api, "POST", "/session", json={"image": IMAGE, "sessionName": "bad-one", **extra}
    )
    assert e.status == 400
    for w in words:
        assert w in e.msg
    assert query(cluster.config, "SELECT count(*) FROM sessions")[0][0] == before


async def test_cli_resource_group_commands_and_session_info(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    async def cli(*argv: str) -> tuple[int, str, str]:
        code = await trio.to_thread.run_sync(run_cli, list(argv), cluster)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = await cli(
        "admin", "resource-group", "add", "batch", "--sequencer", "drf", "--selector", "roundrobin",
        "--option", "hol_blocking=true",
    )  # fmt: skip
    assert code == 0
    assert "sequencer         drf" in out
    assert 'options           {"hol_blocking":true}' in out
    code, out, _ = await cli(
        "admin", "resource-group", "update", "batch",
        "--option", "keypair_limits.max_pending_sessions=5", "--option", "hol_blocking=null",
    )  # fmt: skip
    assert code == 0
    assert 'options           {"keypair_limits":{"max_pending_sessions":5}}' in out
    code, out, _ = await cli("admin", "resource-group", "list")
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["NAME", "ACTIVE", "SEQUENCER", "SELECTOR"]
    assert [r.split()[:4] for r in rows] == [
        ["batch", "yes", "drf", "roundrobin"],
        ["default", "yes", "fifo", "first-fit"],
    ]
    code, _, err = await cli("admin", "resource-group", "update", "batch", "--sequencer", "sjf")
    assert code == 1
    assert "unknown sequencer 'sjf'" in err
    # A session that cannot fit: `session info` says which check, what was asked, what is free.
    await cluster.api.create_session(IMAGE, "huge", resources={"cpu": "4"}, enqueue_only=True)
    await wait_status(cluster.api, "huge", "RUNNING")
    await cluster.api.create_session(IMAGE, "waits", resources={"cpu": "2"}, enqueue_only=True)
    await pending(cluster.api, "waits")
    code, out, _ = await cli("session", "info", "waits")
    reason = next(line for line in out.splitlines() if line.startswith("pendingReason"))
    assert "resources: no agent can fit cpu=2 mem=1g now; largest free: cpu=0 mem=7g" in reason
    code, _, _ = await cli(
        "session", "create", IMAGE, "--name", "child", "--depends-on", "huge", "--priority", "3",
        "--preemptible", "--enqueue-only",
    )  # fmt: skip
    assert code == 0
    info = await pending(cluster.api, "child")
    assert info["pendingReason"] == (
        "dependencies: waiting for 1 dependencies to finish: huge (RUNNING)"
    )
    assert (info["priority"], info["preemptible"]) == (3, True)


@pytest.mark.parametrize(
    ("options", "key", "value", "expected"),
    [
        ({}, "hol_blocking", True, {"hol_blocking": True}),
        ({"a": 1}, "a", None, {}),
        ({"keypair_limits": {"x": 1}}, "keypair_limits.y", 2, {"keypair_limits": {"x": 1, "y": 2}}),
        ({"keypair_limits": 3}, "keypair_limits.y", 2, {"keypair_limits": {"y": 2}}),
    ],
)
def test_apply_option(
    options: dict[str, Any], key: str, value: Any, expected: dict[str, Any]
) -> None:
    assert apply_option(options, key, value) == expected
    assert options != expected or options is not expected
