"""``backendai admin domain|project|user|keypair|policy``: tables, --json, refusals, against a cluster."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from backendai.client.api import APIClient
from tests.cluster import Cluster, cluster_config, open_cluster, run_cli


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(cluster_config(tmp_path)) as c:
        yield c


async def test_account_commands_create_list_and_refuse(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def cli(*argv: str) -> tuple[int, str, str]:
        code = await trio.to_thread.run_sync(run_cli, list(argv), cluster)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = await cli("admin", "domain", "add", "lab", "--resource-group", "default")
    assert code == 0
    assert "lab" in out
    code, out, _ = await cli("admin", "project", "add", "lab", "vision", "--json")
    assert code == 0
    project = json.loads(out)
    assert (project["name"], project["domain_name"]) == ("vision", "lab")
    code, out, _ = await cli("admin", "domain", "list")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["NAME", "ACTIVE", "RESOURCE"]
    assert any(line.split()[0] == "lab" for line in out.splitlines()[1:])

    monkeypatch.setenv("BACKENDAI_NEW_PASSWORD", "ann-password-1")
    code, out, _ = await cli(
        "admin",
        "user",
        "add",
        "ann@lab.org",
        "--domain",
        "lab",
        "--project",
        project["id"],
        "--json",
    )
    assert code == 0, out
    ann = json.loads(out)
    assert (ann["domain_name"], ann["role"], ann["groups"]) == ("lab", "user", "vision")
    assert "ann-password-1" not in out
    code, out, _ = await cli("admin", "policy", "add", "small", "--slots", "cpu=2,mem=4g",
                             "--max-concurrent-sessions", "3", "--idle-timeout", "600")  # fmt: skip
    assert code == 0
    code, out, _ = await cli("admin", "keypair", "add", "ann@lab.org", "--policy", "small",
                             "--rate-limit", "100", "--json")  # fmt: skip
    assert code == 0
    extra = json.loads(out)
    assert (extra["resource_policy"], extra["rate_limit"]) == ("small", 100)

    code, out, _ = await cli("admin", "user", "list", "--domain", "lab")
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    assert code == 0
    assert [r[:4] for r in rows] == [["ann@lab.org", "user", "active", "lab"]]
    code, out, _ = await cli("admin", "keypair", "list", "--email", "ann@lab.org", "--json")
    keys = json.loads(out)
    assert code == 0
    assert len(keys) == 2
    assert {k["resource_policy"] for k in keys} == {"default", "small"}
    code, out, _ = await cli("admin", "policy", "list")
    small = next(line for line in out.splitlines() if line.startswith("small"))
    assert "cpu=2" in small
    assert "mem=4g" in small.lower()
    assert " 3 " in small
    assert "600" in small

    code, out, _ = await cli("admin", "policy", "add", "students", "--for", "user",
                             "--max-vfolder-count", "5", "--max-quota-scope-size", "1073741824")  # fmt: skip
    assert code == 0
    code, out, _ = await cli("admin", "policy", "list", "--for", "user", "--json")
    assert {p["name"]: p["max_vfolder_count"] for p in json.loads(out)} == {
        "default": None,
        "students": 5,
    }
    code, _, err = await cli(
        "admin", "policy", "add", "odd", "--for", "project", "--slots", "cpu=1"
    )
    assert code == 1
    assert "--slots: not an option of a project resource policy" in err

    # The new keypair signs requests as its user.
    async with APIClient(cluster.endpoint, extra["access_key"], extra["secret_key"]) as api:
        assert (await api.request("GET", "/auth/role")).json()["global_role"] == "user"
    # Bad input: exit 1 with the manager's message.
    code, _, err = await cli("admin", "policy", "add", "bad", "--max-concurrent-sessions", "-1")
    assert code == 1
    assert "max_concurrent_sessions" in err
    code, _, err = await cli("admin", "user", "add", "ann@lab.org", "--domain", "lab")
    assert code == 1
    assert "already exists" in err
    code, _, err = await cli("admin", "project", "add", "nowhere", "x-proj")
    assert code == 1
    assert "'nowhere'" in err
