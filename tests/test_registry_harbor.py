"""The Harbor v2 client against a recorded exchange (``tests/data/harbor_v2_exchange.json``).

Harbor cannot run on this machine.  The exchange was written from Harbor's published API
definition (getProject, listRepositories, listArtifacts, getArtifact; the token service
in front of its registry API) and is replayed strictly: every request must match a
recorded one (method, path as sent on the wire, query, the recorded headers), and every
recorded one must be asked for.  This proves our side of the protocol, not a live Harbor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from backendai.errors import RegistryAuthFailed, RegistryNotFound
from backendai.registry import HarborClient, open_registry_client, parse_registry_spec

EXCHANGE = json.loads((Path(__file__).parent / "data" / "harbor_v2_exchange.json").read_text())


class Replay:
    """An httpx transport that answers only the recorded requests."""

    def __init__(self, interactions: list[dict[str, Any]]) -> None:
        self.pending = list(interactions)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().partition("?")[0]
        query = dict(request.url.params)
        for i, item in enumerate(self.pending):
            want = item["request"]
            if (want["method"], want["path"], want["query"]) != (request.method, path, query):
                continue
            for name, value in want["headers"].items():
                assert request.headers.get(name) == value, f"{name} of {request.method} {path}"
            del self.pending[i]
            got = item["response"]
            return httpx.Response(
                got["status"], headers=got["headers"], content=json.dumps(got["body"]).encode()
            )
        raise AssertionError(f"unrecorded request {request.method} {path} {query}")


def harbor(project: str, password: str, replay: Replay) -> HarborClient:
    spec = parse_registry_spec(
        {
            "name": "harbor",
            "url": "https://harbor.test",
            "type": "harbor",
            "project": project,
            "username": EXCHANGE["credentials"]["username"],
            "password": password,
        }
    )
    return HarborClient(spec, transport=httpx.MockTransport(replay))


async def test_scan_lists_tagged_kernel_images_of_every_platform() -> None:
    replay = Replay(EXCHANGE["scan"])
    client = harbor("backendai", EXCHANGE["credentials"]["password"], replay)
    try:
        result = await client.scan()
    finally:
        await client.aclose()
    assert replay.pending == []
    got = [(r.repository, r.tag, r.architecture, r.digest[:8]) for r in result.records]
    assert got == [
        ("backendai/python", "3.10", "x86_64", "sha256:5"),
        ("backendai/python", "3.11", "aarch64", "sha256:b"),
        ("backendai/python", "3.11", "x86_64", "sha256:a"),
        ("backendai/python", "latest", "aarch64", "sha256:b"),
        ("backendai/python", "latest", "x86_64", "sha256:a"),
    ]
    arm = next(r for r in result.records if r.architecture == "aarch64")
    assert arm.index_digest == "sha256:" + "1" * 64
    assert arm.labels["ai.backend.resource.min.mem"] == "512m"
    assert arm.size_bytes == 149000000
    assert result.skipped == [
        "backendai/tools/util:1.0 (x86_64): not a kernel image (no ai.backend.kernelspec label)"
    ]


async def test_platforms_go_through_harbors_token_service() -> None:
    replay = Replay(EXCHANGE["platforms"])
    client = harbor("backendai", EXCHANGE["credentials"]["password"], replay)
    try:
        records = await client.platforms("backendai/python", "3.10")
    finally:
        await client.aclose()
    assert replay.pending == []
    assert [(r.architecture, r.digest, r.size_bytes) for r in records] == [
        ("x86_64", "sha256:" + "5" * 64, 900 + 149999100)
    ]
    assert records[0].labels == {
        "ai.backend.kernelspec": "1",
        "ai.backend.resource.min.mem": "512m",
    }


async def test_wrong_password_and_missing_project_are_clear() -> None:
    client = harbor("backendai", "wrong", Replay(EXCHANGE["wrong_password"]))
    try:
        with pytest.raises(
            RegistryAuthFailed, match=r"refused user 'robot\$backendai\+scanner'.*401: unauthorized"
        ) as e:
            await client.check()
        assert "wrong" not in str(e.value)
    finally:
        await client.aclose()
    client = harbor(
        "nope", EXCHANGE["credentials"]["password"], Replay(EXCHANGE["missing_project"])
    )
    try:
        with pytest.raises(
            RegistryNotFound, match=r"Harbor project 'nope' not found.*project nope not found"
        ):
            await client.scan()
    finally:
        await client.aclose()


async def test_open_registry_client_picks_the_harbor_client() -> None:
    spec = parse_registry_spec(
        {"name": "h", "url": "https://harbor.test", "type": "harbor", "project": "p"}
    )
    async with open_registry_client(spec, transport=httpx.MockTransport(Replay([]))) as client:
        assert isinstance(client, HarborClient)
