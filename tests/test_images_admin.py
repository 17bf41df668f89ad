"""The admin registry and image routes and CLI, over real HTTP against an in-process cluster
(dummy agent) and real registries; bad input answers clearly and changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from backendai.hw.arch import host_architecture

from .cluster import Cluster, add_user, call, cluster_config, open_cluster, query, refused, run_cli
from .registries import (
    open_auth_registry,
    require_open_registry,
    unique,
    upload_image,
    upload_index,
)

HOST_ARCH = host_architecture()
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(HOST_ARCH, HOST_ARCH)
OTHER_ARCH, OTHER_NORMAL = ("arm64", "aarch64") if HOST_ARCH == "x86_64" else ("amd64", "x86_64")


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with open_cluster(cluster_config(tmp_path)) as c:
        yield c


async def test_register_rescan_list_alias_forget(cluster: Cluster) -> None:
    url = require_open_registry()
    host, ns = url.removeprefix("http://"), unique("t")
    py, py_size = await upload_image(url, f"{ns}/python", "3.11", arch=DOCKER_ARCH)
    arm, arm_size = await upload_image(url, f"{ns}/python", "3.11-arm", arch=OTHER_ARCH)
    await upload_index(
        url, f"{ns}/python", "multi", [(py, py_size, DOCKER_ARCH), (arm, arm_size, OTHER_ARCH)]
    )
    api = cluster.api
    added = await call(
        api, "POST", "/admin/registries", json={"name": "lab", "url": url, "project": ns}
    )
    assert added == {**added, "name": "lab", "type": "docker", "password": "", "images": 0}
    result = (await call(api, "POST", "/admin/registries/lab/rescan"))["results"][0]
    assert (result["images"], result["added"], result["removed"], result["skipped"]) == (
        4,
        4,
        0,
        [],
    )
    images = (await call(api, "GET", "/admin/images", params={"registry": "lab"}))["images"]
    assert [(i["name"], i["architecture"]) for i in images] == sorted(
        [
            (f"{host}/{ns}/python:3.11", HOST_ARCH),
            (f"{host}/{ns}/python:3.11-arm", OTHER_NORMAL),
            (f"{host}/{ns}/python:multi", HOST_ARCH),
            (f"{host}/{ns}/python:multi", OTHER_NORMAL),
        ]
    )
    first = next(i for i in images if i["tag"] == "3.11")
    assert first["digest"] == py
    assert first["tag"] == "3.11"
    assert first["registry"] == "lab"
    assert first["resourceLimits"] == {"cpu": "1", "mem": "256m"}
    # The agents' own images are in the catalog too, without a registry.
    everything = (await call(api, "GET", "/admin/images"))["images"]
    assert ("backendai/python:3.11", "") in {(i["name"], i["registry"]) for i in everything}

    alias = await call(
        api, "POST", "/admin/images/alias", json={"alias": "py-lab", "target": f"{ns}/python:multi"}
    )
    assert alias == {"alias": "py-lab", "target": f"{host}/{ns}/python:multi"}
    # A session names the image by alias; the catalog resolves it for the agents' architecture.
    s = await api.create_session("py-lab", "by-alias", enqueue_only=True)
    row = query(
        cluster.config, "SELECT image, architecture FROM sessions WHERE id = :i", i=s["sessionId"]
    )
    assert tuple(row[0]) == (f"{host}/{ns}/python:multi", HOST_ARCH)
    await api.destroy_session("by-alias")

    # A tag that left the registry leaves the catalog at the next rescan.
    async with httpx.AsyncClient(base_url=url) as raw:
        gone = await raw.delete(f"/v2/{ns}/python/manifests/{arm}")
        assert gone.status_code == 202
    rescan = await call(api, "POST", "/admin/images/rescan", json={"registry": "lab"})
    result = rescan["results"][0]
    # 3.11-arm went, and the list "multi" now names a missing manifest: skipped, with why.
    assert (result["images"], result["removed"]) == (1, 3)
    assert len(result["skipped"]) == 1
    assert result["skipped"][0].startswith(f"{ns}/python:multi: ")
    assert "not found" in result["skipped"][0]
    # The alias of an image that left the catalog went with it.
    assert query(cluster.config, "SELECT count(*) FROM image_aliases")[0][0] == 0
    e = await refused(api, "DELETE", "/admin/images", params={"name": "py-lab"})
    assert e.status == 404
    await call(
        api, "POST", "/admin/images/alias", json={"alias": "py", "target": f"{ns}/python:3.11"}
    )
    assert await call(api, "DELETE", "/admin/images", params={"name": "py"}) == {
        "name": "py",
        "removed": 1,
    }
    assert (await call(api, "GET", "/admin/images", params={"registry": "lab"}))["images"] == []
    assert query(cluster.config, "SELECT count(*) FROM image_aliases")[0][0] == 0
    await call(api, "POST", "/admin/images/rescan")
    forgotten = await call(api, "DELETE", "/admin/registries/lab")
    assert forgotten == {"registry": "lab", "removedImages": 1}
    assert (await call(api, "GET", "/admin/images", params={"registry": "lab"}))["images"] == []


async def test_bad_input_is_refused_clearly_and_changes_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    api = cluster.api
    down = await refused(
        api, "POST", "/admin/registries", json={"name": "down", "url": "http://127.0.0.1:1"}
    )
    assert (down.status, down.slug) == (502, "registry-unreachable")
    assert "http://127.0.0.1:1 does not answer GET /v2/" in down.msg
    bad = await refused(api, "POST", "/admin/registries", json={"name": "x", "url": "ftp://h"})
    assert (bad.status, bad.slug) == (
        400,
        "invalid-api-params",
    )
    assert "url: invalid value 'ftp://h'" in bad.msg
    async with open_auth_registry(tmp_path / "auth") as reg:
        wrong = {
            "name": "auth",
            "url": reg.url,
            "username": reg.username,
            "password": "hunter2-wrong",
        }
        e = await refused(api, "POST", "/admin/registries", json=wrong)
        assert (e.status, e.slug) == (502, "registry-auth-failed")
        assert "refused user 'alice'" in e.msg
        assert "hunter2" not in e.msg
        ok = {**wrong, "password": reg.password}
        added = await call(api, "POST", "/admin/registries", json=ok)
        assert added["password"] == "********"
        again = await refused(api, "POST", "/admin/registries", json=ok)
        assert (again.status, again.slug) == (409, "conflict")
    assert [r["name"] for r in (await call(api, "GET", "/admin/registries"))["registries"]] == [
        "auth"
    ]
    # The registry went away: a rescan says so and keeps the catalog as it was.
    e = await refused(api, "POST", "/admin/registries/auth/rescan")
    assert (e.status, e.slug) == (502, "registry-unreachable")
    e = await refused(api, "POST", "/admin/registries/nope/rescan")
    assert e.status == 404
    assert "no registry 'nope'; registered: auth" in e.msg
    e = await refused(
        api, "POST", "/admin/images/alias", json={"alias": "x", "target": "no/such:image"}
    )
    assert e.status == 404
    assert "unknown image 'no/such:image'" in e.msg
    assert query(cluster.config, "SELECT password FROM registries")[0][0] == reg.password


async def test_an_image_only_for_another_architecture_is_refused_at_creation(
    cluster: Cluster,
) -> None:
    url = require_open_registry()
    host, ns = url.removeprefix("http://"), unique("t")
    await upload_image(url, f"{ns}/foreign", "1.0", arch=OTHER_ARCH)
    api = cluster.api
    await call(api, "POST", "/admin/registries", json={"name": "lab", "url": url, "project": ns})
    await call(api, "POST", "/admin/images/rescan")
    e = await refused(
        api,
        "POST",
        "/session",
        json={"image": f"{host}/{ns}/foreign:1.0", "sessionName": "foreign"},
    )
    assert (e.status, e.slug) == (404, "image-not-found")
    assert (
        f"built only for {OTHER_NORMAL}; the agents of resource group 'default' are {HOST_ARCH}"
        in e.msg
    )
    assert query(cluster.config, "SELECT count(*) FROM sessions")[0][0] == 0


async def test_only_a_superadmin_manages_images(cluster: Cluster) -> None:
    async with await add_user(cluster, "u@example.com") as user:
        for method, path in [
            ("GET", "/admin/registries"),
            ("POST", "/admin/registries"),
            ("GET", "/admin/images"),
            ("POST", "/admin/images/rescan"),
        ]:
            e = await refused(user, method, path, json={})
            assert (e.status, e.slug) == (403, "forbidden")
            assert "only a superadmin" in e.msg


async def test_cli_registry_and_image_commands(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = require_open_registry()
    host, ns = url.removeprefix("http://"), unique("t")
    await upload_image(url, f"{ns}/python", "3.11", arch=DOCKER_ARCH)

    async def cli(*argv: str) -> tuple[int, str, str]:
        code = await trio.to_thread.run_sync(run_cli, list(argv), cluster)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = await cli("admin", "registry", "add", "lab", url, "--project", ns)
    assert (code, out) == (0, f"Registry lab (docker, {url}) registered.\n")
    code, out, _ = await cli("admin", "registry", "rescan", "lab")
    assert (code, out) == (0, "lab: 1 image(s); 1 added, 0 updated, 0 removed, 0 skipped\n")
    code, out, _ = await cli("admin", "image", "alias", "py", f"{host}/{ns}/python:3.11")
    assert (code, out) == (0, f"py -> {host}/{ns}/python:3.11\n")
    code, out, _ = await cli("admin", "image", "list", "--registry", "lab")
    header, row = out.splitlines()
    assert header.split()[:5] == ["NAME", "ARCH", "REGISTRY", "DIGEST", "SIZE"]
    assert row.split()[:3] == [f"{host}/{ns}/python:3.11", HOST_ARCH, "lab"]
    assert row.split()[-3:] == ["cpu=1", "mem=256m", "py"]
    code, out, _ = await cli("admin", "registry", "list")
    assert code == 0
    assert out.splitlines()[1].split() == ["lab", "docker", url, ns, "-", "1"]
    code, out, _ = await cli("admin", "image", "unalias", "py")
    assert (code, out) == (0, "Alias py removed.\n")
    code, _, err = await cli("admin", "image", "unalias", "py")
    assert code == 1
    assert "no image alias 'py'" in err
    monkeypatch.delenv("BACKENDAI_REGISTRY_PASSWORD", raising=False)
    code, _, err = await cli("admin", "registry", "add", "x", url, "--username", "u")
    assert code == 2
    assert "needs a password" in err
    code, _, err = await cli("admin", "registry", "add", "down", "http://127.0.0.1:1")
    assert code == 1
    assert "registry-unreachable" in err
    code, out, _ = await cli("admin", "image", "forget", f"{host}/{ns}/python:3.11")
    assert (code, out) == (0, f"Image {host}/{ns}/python:3.11 forgotten (1 architecture(s)).\n")
    code, out, _ = await cli("admin", "registry", "rm", "lab")
    assert (code, out) == (0, "Registry lab forgotten with 0 image(s).\n")
