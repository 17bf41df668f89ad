"""Manager /folders over real HTTP with the storage proxy in the same cluster (role all)."""

from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import trio

from backendai.client.api import APIClient, APIResponseError
from backendai.db.tables import user_resource_policies, users

from .accounts_fixtures import add_account, add_domain, in_db
from .cluster import Cluster, add_user, cluster_config, open_cluster

TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(cluster_config(tmp_path)) as c:
        yield c


async def _json(api: APIClient, method: str, path: str, body: Any = None) -> Any:
    r = await api.request(method, path, json=body)
    return r.json() if r.content else None


async def _upload(api: APIClient, folder: str, path: str, data: bytes) -> httpx.Response:
    info = await _json(
        api, "POST", f"/folders/{folder}/request-upload", {"path": path, "size": len(data)}
    )
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.patch(
            info["url"],
            params={"token": info["token"]},
            content=data,
            headers={**TUS, "Upload-Offset": "0"},
        )


async def _download(
    api: APIClient, folder: str, path: str, archive: bool = False
) -> httpx.Response:
    info = await _json(
        api, "POST", f"/folders/{folder}/request-download", {"path": path, "archive": archive}
    )
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.get(info["url"], params={"token": info["token"]})


async def test_folder_lifecycle_and_transfers(cluster: Cluster) -> None:
    api = cluster.api
    hosts = await _json(api, "GET", "/folders/_/hosts")
    assert hosts["default"] == "local"
    assert "local" in hosts["allowed"]
    made = await _json(api, "POST", "/folders", {"name": "data", "quota": "10m"})
    assert (made["name"], made["host"], made["permission"], made["is_owner"]) == (
        "data", "local", "wd", True,
    )  # fmt: skip
    with pytest.raises(APIResponseError) as e:
        await api.request("POST", "/folders", json={"name": "data"})
    assert e.value.status == 409
    with pytest.raises(APIResponseError) as e:
        await api.request("POST", "/folders", json={"name": "../x"})
    assert e.value.status == 400
    assert "folder name '../x' is invalid" in e.value.msg

    payload = os.urandom(2 * 1024 * 1024 + 5)
    r = await _upload(api, "data", "in/blob.bin", payload)
    assert r.status_code == 204, r.text
    await api.request("POST", "/folders/data/mkdir", json={"path": "out/deep", "parents": True})
    listing = await _json(api, "GET", "/folders/data/files?path=in")
    assert [(i["name"], i["size"]) for i in listing["items"]] == [("blob.bin", len(payload))]
    r = await _download(api, "data", "in/blob.bin")
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(payload).digest()
    r = await _download(api, "data", "in", archive=True)
    assert zipfile.ZipFile(io.BytesIO(r.content)).read("blob.bin") == payload
    info = await _json(api, "GET", "/folders/data")
    assert (info["numFiles"], info["used_bytes"], info["quota"]) == (1, len(payload), 10 * 2**20)

    await api.request(
        "POST", "/folders/data/rename-file", json={"target_path": "in/blob.bin", "new_name": "b"}
    )
    await api.request("POST", "/folders/data/move-file", json={"src": "in/b", "dst": "out"})
    await api.request(
        "DELETE", "/folders/data/delete-files", json={"files": ["in"], "recursive": True}
    )
    names = {i["name"] for i in (await _json(api, "GET", "/folders/data/files"))["items"]}
    assert names == {"out"}
    cloned = await _json(api, "POST", "/folders/data/clone", {"target_name": "copy"})
    assert cloned["name"] == "copy"
    r = await _download(api, "copy", "out/b")
    assert r.content == payload
    await api.request("POST", "/folders/copy/rename", json={"new_name": "copy2"})
    assert sorted(f["name"] for f in await _json(api, "GET", "/folders")) == ["copy2", "data"]
    await api.request("DELETE", "/folders/copy2")
    with pytest.raises(APIResponseError) as e:
        await api.request("GET", "/folders/copy2")
    assert e.value.status == 404


async def test_quota_exceeded_through_the_manager_token(cluster: Cluster) -> None:
    api = cluster.api
    await _json(api, "POST", "/folders", {"name": "tiny", "quota": "1m"})
    r = await _upload(api, "tiny", "big.bin", b"z" * (2 * 1024 * 1024))
    assert r.status_code == 413
    assert r.json()["type"].endswith("/vfolder-quota-exceeded")
    assert "would exceed its quota of 1.0 MiB" in r.json()["msg"]
    assert (await _json(api, "GET", "/folders/tiny/files"))["items"] == []


async def test_permissions_share_and_invite(cluster: Cluster) -> None:
    admin = cluster.api
    await _json(admin, "POST", "/folders", {"name": "team"})
    assert (await _upload(admin, "team", "readme.txt", b"hello")).status_code == 204
    async with await add_user(cluster, "bob@example.com") as bob:
        with pytest.raises(APIResponseError) as e:
            await bob.request("GET", "/folders/team/files")
        assert e.value.status == 404
        await admin.request(
            "POST", "/folders/team/share", json={"permission": "ro", "emails": ["bob@example.com"]}
        )
        [seen] = await _json(bob, "GET", "/folders")
        assert (seen["name"], seen["permission"], seen["is_owner"]) == ("team", "ro", False)
        assert (await _download(bob, "team", "readme.txt")).content == b"hello"
        with pytest.raises(APIResponseError) as e:
            await bob.request("POST", "/folders/team/request-upload", json={"path": "x", "size": 1})
        assert e.value.status == 403
        assert "uploading needs permission 'rw'; you have 'ro'" in e.value.msg
        with pytest.raises(APIResponseError) as e:
            await bob.request("POST", "/folders/team/share", json={"emails": ["bob@example.com"]})
        assert e.value.status == 403
        # An invitation for rw, accepted, upgrades bob; deleting the folder still needs wd.
        await admin.request(
            "POST", "/folders/team/invite", json={"perm": "rw", "emails": ["bob@example.com"]}
        )
        [inv] = (await _json(bob, "GET", "/folders/invitations/list"))["invitations"]
        assert (inv["vfolder_name"], inv["perm"]) == ("team", "rw")
        await bob.request("POST", "/folders/invitations/accept", json={"inv_id": inv["id"]})
        assert (await _upload(bob, "team", "bob.txt", b"bob")).status_code == 204
        with pytest.raises(APIResponseError) as e:
            await bob.request("DELETE", "/folders/team")
        assert e.value.status == 403
        with pytest.raises(APIResponseError) as e:
            await bob.request(
                "POST", "/folders/team/invite", json={"perm": "rw", "emails": ["nobody@x"]}
            )
        assert e.value.status == 403
        await admin.request("DELETE", "/folders/team/unshare", json={"emails": ["bob@example.com"]})
        assert await _json(bob, "GET", "/folders") == []


async def test_concurrent_creates_of_one_name_make_one_folder(cluster: Cluster) -> None:
    statuses: list[int] = []

    async def create() -> None:
        try:
            await cluster.api.request("POST", "/folders", json={"name": "race"})
            statuses.append(201)
        except APIResponseError as e:
            statuses.append(e.status)

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(create)
    assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
    assert [f["name"] for f in await _json(cluster.api, "GET", "/folders")] == ["race"]


async def test_project_folders_belong_to_the_project_members(cluster: Cluster) -> None:
    admin = cluster.api
    await _json(admin, "POST", "/folders", {"name": "shared-data", "group": "default"})
    assert (await _upload(admin, "shared-data", "a.txt", b"for the project")).status_code == 204
    await add_domain(cluster.config, "lab")
    outsider = await add_account(cluster.config, "carol@lab.org", domain="lab")
    async with (
        await add_user(cluster, "dana@example.com") as member,
        APIClient(cluster.endpoint, outsider.access_key, outsider.secret_key) as carol,
    ):
        [seen] = [f for f in await _json(member, "GET", "/folders") if f["name"] == "shared-data"]
        assert seen["group"] == "default"
        assert (await _download(member, "shared-data", "a.txt")).content == b"for the project"
        assert [
            f for f in await _json(carol, "GET", "/folders") if f["name"] == "shared-data"
        ] == []
        with pytest.raises(APIResponseError) as e:
            await member.request("POST", "/folders", json={"name": "mine", "group": "default"})
        assert e.value.status == 403
        assert "'default'" in e.value.msg
        with pytest.raises(APIResponseError) as e:
            await admin.request("POST", "/folders", json={"name": "x1", "group": "no-such"})
        assert e.value.status == 403
        assert "'no-such'" in e.value.msg


async def test_the_owners_folder_policy_limits_count_and_quota(cluster: Cluster) -> None:
    def small_policy(c: sa.Connection) -> None:
        c.execute(
            user_resource_policies.insert().values(
                name="two-small",
                max_vfolder_count=2,
                max_quota_scope_size=3 << 20,
                created_at=time.time(),
            )
        )

    await in_db(cluster.config, small_policy)
    erin = await add_account(cluster.config, "erin@example.com")
    await in_db(
        cluster.config,
        lambda c: c.execute(
            users.update().where(users.c.email == erin.email).values(resource_policy="two-small")
        ),
    )
    async with APIClient(cluster.endpoint, erin.access_key, erin.secret_key) as api:
        await _json(api, "POST", "/folders", {"name": "first", "quota": "1m"})
        second = await _json(api, "POST", "/folders", {"name": "second"})
        assert second["max_size"] == 2 << 20  # what the scope had left
        with pytest.raises(APIResponseError) as e:
            await api.request("POST", "/folders", json={"name": "third", "quota": "1k"})
        assert e.value.status == 400
        assert "'two-small' allows 2 (max_vfolder_count)" in e.value.msg
        await api.request("DELETE", "/folders/first")
        with pytest.raises(APIResponseError) as e:
            await api.request("POST", "/folders", json={"name": "third", "quota": "2m"})
        assert e.value.status == 413
        assert "leaves: 1048576 of 3145728 bytes (max_quota_scope_size)" in e.value.msg
        names = {f["name"] for f in await _json(api, "GET", "/folders")}
        assert names == {"second"}
        await _json(api, "POST", "/folders", {"name": "third", "quota": "1m"})
