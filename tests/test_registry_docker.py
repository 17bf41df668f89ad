"""The Docker Registry v2 client against real registries: the open one on 127.0.0.1:5000 and a
second one with htpasswd (basic) auth; the bearer-token flow against a small token server
and registry that follow Docker's token protocol (no registry with token auth runs here)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from backendai.errors import RegistryAuthFailed, RegistryNotFound, RegistryUnreachable
from backendai.registry import DockerRegistryClient, RegistrySpec, parse_registry_spec

from .registries import (
    OPEN_REGISTRY,
    open_auth_registry,
    require_open_registry,
    unique,
    upload_image,
    upload_index,
)


def spec_for(url: str, project: str = "", username: str = "", password: str = "") -> RegistrySpec:
    return parse_registry_spec(
        {"name": "test", "url": url, "project": project, "username": username, "password": password}
    )


async def test_scan_reads_tags_platforms_and_labels() -> None:
    url = require_open_registry()
    ns = unique("t")
    amd, amd_size = await upload_image(url, f"{ns}/multi", "amd", arch="amd64")
    arm, arm_size = await upload_image(url, f"{ns}/multi", "arm", arch="arm64")
    index = await upload_index(
        url, f"{ns}/multi", "2.0", [(amd, amd_size, "amd64"), (arm, arm_size, "arm64")]
    )
    only, _ = await upload_image(url, f"{ns}/kernel", "1.0", arch="amd64")
    await upload_image(url, f"{ns}/plain", "1.0", labels={"maintainer": "someone"})
    client = DockerRegistryClient(spec_for(url, project=ns))
    try:
        await client.check()
        assert await client.repositories() == [f"{ns}/kernel", f"{ns}/multi", f"{ns}/plain"]
        assert await client.tags(f"{ns}/multi") == ["2.0", "amd", "arm"]
        result = await client.scan()
    finally:
        await client.aclose()
    found = {(r.repository, r.tag, r.architecture): r for r in result.records}
    assert sorted(found) == [
        (f"{ns}/kernel", "1.0", "x86_64"),
        (f"{ns}/multi", "2.0", "aarch64"),
        (f"{ns}/multi", "2.0", "x86_64"),
        (f"{ns}/multi", "amd", "x86_64"),
        (f"{ns}/multi", "arm", "aarch64"),
    ]
    listed = found[(f"{ns}/multi", "2.0", "aarch64")]
    assert listed.digest == arm
    assert listed.index_digest == index
    assert listed.labels["ai.backend.resource.min.mem"] == "256m"
    assert listed.size_bytes > 4096
    assert len(listed.layers) == 1
    assert found[(f"{ns}/kernel", "1.0", "x86_64")].digest == only
    assert result.skipped == [
        f"{ns}/plain:1.0 (x86_64): not a kernel image (no ai.backend.kernelspec label)"
    ]


async def test_a_missing_tag_is_not_found_with_the_registrys_words() -> None:
    url = require_open_registry()
    ns = unique("t")
    await upload_image(url, f"{ns}/kernel", "1.0")
    client = DockerRegistryClient(spec_for(url))
    try:
        with pytest.raises(
            RegistryNotFound, match=rf"manifest {ns}/kernel:nope not found.*manifest unknown"
        ):
            await client.platforms(f"{ns}/kernel", "nope")
        with pytest.raises(RegistryNotFound, match=rf"manifest {ns}/nothing:1\.0 not found"):
            await client.platforms(f"{ns}/nothing", "1.0")
    finally:
        await client.aclose()


async def test_a_registry_that_is_down_is_unreachable() -> None:
    client = DockerRegistryClient(spec_for("http://127.0.0.1:1"))
    try:
        with pytest.raises(
            RegistryUnreachable,
            match=r"registry 'test' at http://127\.0\.0\.1:1 does not answer GET /v2/",
        ):
            await client.check()
    finally:
        await client.aclose()


async def test_basic_auth_registry(tmp_path: Path) -> None:
    async with open_auth_registry(tmp_path) as reg:
        digest, _ = await upload_image(reg.url, "team/kernel", "1.0", auth=reg.auth)
        good = DockerRegistryClient(spec_for(reg.url, "", reg.username, reg.password))
        wrong = DockerRegistryClient(spec_for(reg.url, "", reg.username, "not-" + reg.password))
        anonymous = DockerRegistryClient(spec_for(reg.url))
        try:
            await good.check()
            result = await good.scan()
            assert [(r.repository, r.tag, r.digest) for r in result.records] == [
                ("team/kernel", "1.0", digest)
            ]
            with pytest.raises(RegistryAuthFailed, match="refused user 'alice' for GET /v2/") as e:
                await wrong.check()
            assert reg.password not in str(e.value)
            with pytest.raises(RegistryAuthFailed, match="refused anonymous access"):
                await anonymous.scan()
        finally:
            for c in (good, wrong, anonymous):
                await c.aclose()


class TokenRegistry:
    """A token server and a registry that follow Docker's token protocol, in memory."""

    def __init__(self) -> None:
        self.token_requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            self.token_requests.append(request)
            expected = "Basic " + base64.b64encode(b"bob:right").decode()
            if request.headers.get("Authorization") != expected:
                return httpx.Response(401, json={"details": "incorrect username or password"})
            scope = request.url.params["scope"]
            assert request.url.params["service"] == "registry.test"
            return httpx.Response(200, json={"token": f"tok:{scope}", "expires_in": 300})
        path = request.url.path
        scope = (
            "registry:catalog:*"
            if path == "/v2/_catalog"
            else f"repository:{path.removeprefix('/v2/').partition('/tags/')[0]}:pull"
        )
        if request.headers.get("Authorization") != f"Bearer tok:{scope}":
            challenge = (
                f'Bearer realm="https://auth.test/token",service="registry.test",scope="{scope}"'
            )
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": challenge},
                json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            )
        if path == "/v2/_catalog":
            return httpx.Response(200, json={"repositories": ["lib/python"]})
        return httpx.Response(200, json={"name": "lib/python", "tags": ["3.11", "3.12"]})


async def test_bearer_token_flow_fetches_one_token_per_scope() -> None:
    server = TokenRegistry()
    spec = spec_for("https://registry.test", "", "bob", "right")
    client = DockerRegistryClient(spec, transport=httpx.MockTransport(server))
    try:
        assert await client.repositories() == ["lib/python"]
        assert await client.tags("lib/python") == ["3.11", "3.12"]
        assert await client.tags("lib/python") == ["3.11", "3.12"]  # the token is reused
    finally:
        await client.aclose()
    scopes = [r.url.params["scope"] for r in server.token_requests]
    assert scopes == ["registry:catalog:*", "repository:lib/python:pull"]
    assert {r.url.params["account"] for r in server.token_requests} == {"bob"}


async def test_bearer_token_refused_names_the_token_service() -> None:
    server = TokenRegistry()
    spec = spec_for("https://registry.test", "", "bob", "wrong")
    client = DockerRegistryClient(spec, transport=httpx.MockTransport(server))
    try:
        with pytest.raises(
            RegistryAuthFailed,
            match=r"token service https://auth\.test/token refused user 'bob' \(401\)",
        ) as e:
            await client.tags("lib/python")
    finally:
        await client.aclose()
    assert "wrong" not in str(e.value)


def test_open_registry_url_is_loopback() -> None:
    assert httpx.URL(OPEN_REGISTRY).host in ("127.0.0.1", "localhost", "::1")
