"""The registry package's pure parts, table-driven: challenges, references, settings, manifests,
and the agent's pull progress and failure reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backendai.agent.pulling import PullTracker, classify_pull_error
from backendai.config import Secret
from backendai.errors import ImagePullError, InvalidAPIParameters, RegistryError, RPCError
from backendai.manager.pulls import PULL_ERROR_REASONS, launch_failure_reason
from backendai.manager.states import ERROR_REASONS, final_kernel_status
from backendai.registry import (
    Challenge,
    ImageReference,
    parse_challenge,
    parse_reference,
    parse_registry_spec,
    scope_for_path,
)
from backendai.registry.manifests import kernel_labels, parse_index, parse_manifest, platform_of


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ('Digest realm="x"', None),
        ('Basic realm="Registry Realm"', Challenge("basic", "Registry Realm")),
        (
            'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
            'scope="repository:library/python:pull"',
            Challenge(
                "bearer",
                "https://auth.example.com/token",
                "registry.example.com",
                "repository:library/python:pull",
            ),
        ),
        (
            'bearer realm="https://h/service/token", service="harbor-registry"',
            Challenge("bearer", "https://h/service/token", "harbor-registry", ""),
        ),
        (
            "Bearer realm=https://bare/token,service=reg",
            Challenge("bearer", "https://bare/token", "reg"),
        ),
    ],
)
def test_parse_challenge(header: str | None, expected: Challenge | None) -> None:
    assert parse_challenge(header) == expected


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/v2/", ""),
        ("/v2/_catalog", "registry:catalog:*"),
        ("/v2/library/python/manifests/3.11", "repository:library/python:pull"),
        ("/v2/a/b/c/blobs/sha256:00", "repository:a/b/c:pull"),
        ("/v2/x/tags/list", "repository:x:pull"),
    ],
)
def test_scope_for_path(path: str, scope: str) -> None:
    assert scope_for_path(path) == scope


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("python", ImageReference("", "python", "latest")),
        ("backendai/python:3.11", ImageReference("", "backendai/python", "3.11")),
        (
            "127.0.0.1:5000/backendai/python:3.11",
            ImageReference("127.0.0.1:5000", "backendai/python", "3.11"),
        ),
        ("localhost/x", ImageReference("localhost", "x", "latest")),
        ("cr.example.com/a/b/c", ImageReference("cr.example.com", "a/b/c", "latest")),
        (
            "h:5000/r@sha256:" + "a" * 64,
            ImageReference("h:5000", "r", "", "sha256:" + "a" * 64),
        ),
    ],
)
def test_parse_reference(ref: str, expected: ImageReference) -> None:
    parsed = parse_reference(ref)
    assert parsed == expected
    assert parse_reference(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("Upper/case", "invalid repository 'Upper/case'"),
        ("repo:bad tag", "invalid tag 'bad tag'"),
        ("repo@sha256:short", "invalid digest"),
        ("host:5000/", "invalid repository ''"),
    ],
)
def test_parse_reference_refuses_bad_input(ref: str, message: str) -> None:
    with pytest.raises(InvalidAPIParameters, match=message):
        parse_reference(ref)


def test_registry_spec_hides_its_password() -> None:
    spec = parse_registry_spec(
        {"name": "lab", "url": "http://127.0.0.1:5000/", "username": "u", "password": "hunter2"}
    )
    assert spec.url == "http://127.0.0.1:5000"
    assert spec.host == "127.0.0.1:5000"
    assert spec.password == Secret("hunter2")
    assert "hunter2" not in repr(spec)
    assert "hunter2" not in str(spec)
    assert spec.image_name("backendai/python", "3.11") == "127.0.0.1:5000/backendai/python:3.11"
    assert parse_registry_spec(spec.to_wire()) == spec


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected an object"),
        ({"url": "http://h"}, r"body\.name: missing"),
        ({"name": "Bad Name", "url": "http://h"}, r"body\.name: invalid value 'Bad Name'"),
        ({"name": "r", "url": "ftp://h"}, r"body\.url: invalid value 'ftp://h'"),
        ({"name": "r", "url": "http://h/path"}, r"body\.url: invalid value"),
        ({"name": "r", "url": "http://u:p@h"}, "credentials, query or fragment"),
        ({"name": "r", "url": "http://h", "type": "quay"}, r"body\.type: invalid value 'quay'"),
        (
            {"name": "r", "url": "http://h", "type": "harbor"},
            "needs the name of one Harbor project",
        ),
        ({"name": "r", "url": "http://h", "project": "Bad"}, r"body\.project: invalid value"),
        ({"name": "r", "url": "http://h", "username": "u"}, "without a password"),
        ({"name": "r", "url": "http://h", "password": 5}, r"body\.password: invalid value 5"),
    ],
)
def test_registry_spec_refuses_bad_input(raw: Any, message: str) -> None:
    with pytest.raises(InvalidAPIParameters, match=message):
        parse_registry_spec(raw)


def test_password_never_in_the_error_message() -> None:
    with pytest.raises(InvalidAPIParameters) as e:
        parse_registry_spec({"name": "r", "url": "http://h", "password": "hunter2"})
    assert "hunter2" not in str(e.value)


LIST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests": [
        {"digest": "sha256:a", "platform": {"architecture": "amd64", "os": "linux"}},
        {
            "digest": "sha256:b",
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
        {"digest": "sha256:c", "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        {"digest": "sha256:d", "platform": {"architecture": "unknown", "os": "unknown"}},
    ],
}


def test_manifest_list_entries_are_normalized() -> None:
    entries = parse_index(LIST, "here")
    assert [(e.digest, e.architecture) for e in entries] == [
        ("sha256:a", "x86_64"),
        ("sha256:b", "aarch64"),
        ("sha256:c", "arm7"),
    ]


def test_manifest_sizes_and_config() -> None:
    doc = {
        "schemaVersion": 2,
        "config": {"digest": "sha256:cfg", "size": 100},
        "layers": [{"digest": "sha256:l1", "size": 1000}, {"digest": "sha256:l2", "size": 10}],
    }
    m = parse_manifest(doc, "application/vnd.oci.image.manifest.v1+json", "here")
    assert m.size == 1110
    assert m.config_digest == "sha256:cfg"
    assert len(m.layers) == 2
    with pytest.raises(RegistryError, match="schema 1"):
        parse_manifest({"schemaVersion": 1}, "", "here")
    with pytest.raises(RegistryError, match="malformed manifest"):
        parse_manifest({"schemaVersion": 2}, "", "here")
    config = {"architecture": "arm64", "os": "linux", "config": {"Labels": {"a": 1}}}
    assert platform_of(config) == ("aarch64", "linux")
    assert kernel_labels(config) == {"a": "1"}
    assert kernel_labels({}) == {}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("unauthorized: authentication required", "auth-failed"),
        ("Get http://h/v2/: no basic auth credentials", "auth-failed"),
        ("denied: requested access to the resource is denied", "auth-failed"),
        ("manifest for h/x:1 not found: manifest unknown: manifest unknown", "not-found"),
        ("repository h/x not found: name unknown", "not-found"),
        ("no matching manifest for linux/amd64 in the manifest list entries", "wrong-arch"),
        ("write /var/lib/docker/tmp/x: no space left on device", "no-space"),
        ("dial tcp 127.0.0.1:1: connect: connection refused", "unreachable"),
        ("something else entirely", "failed"),
    ],
)
def test_classify_pull_error(message: str, reason: str) -> None:
    assert classify_pull_error(message) == reason


def test_pull_tracker_counts_layers_and_bytes() -> None:
    t = PullTracker("img")
    for msg in [
        {"status": "Pulling from backendai/x", "id": "1"},
        {"status": "Already exists", "id": "base"},
        {"status": "Pulling fs layer", "id": "new"},
        {"status": "Downloading", "id": "new", "progressDetail": {"current": 10, "total": 100}},
    ]:
        t.feed(msg)
    assert t.snapshot() == {
        "image": "img",
        "layersTotal": 2,
        "layersDone": 1,
        "bytesTotal": 100,
        "bytesDone": 10,
    }
    t.feed({"status": "Download complete", "id": "new", "progressDetail": {}})
    t.feed({"status": "Pull complete", "id": "new"})
    t.feed({"status": "Digest: sha256:x"})
    assert t.snapshot()["layersDone"] == 2
    assert t.snapshot()["bytesDone"] == 100
    with pytest.raises(ImagePullError, match="no space left") as e:
        t.feed({"errorDetail": {"message": "no space left on device"}, "error": "x"})
    assert e.value.reason == "no-space"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RPCError("x", status=422, slug="image-pull-auth-failed"), "image-auth-failed"),
        (RPCError("x", status=422, slug="image-pull-wrong-arch"), "image-wrong-arch"),
        (RPCError("x", status=422, slug="image-pull-no-space"), "image-no-space"),
        (RPCError("x", status=422, slug="image-pull-not-found"), "image-not-found"),
        (RPCError("x", status=422, slug="image-pull-timeout"), "image-pull-timeout"),
        (RPCError("x", status=503, slug="image-pull-unreachable"), "image-pull-failed"),
        (RPCError("x", status=404, slug="image-not-found"), "image-not-found"),
        (RPCError("x", status=500, slug="kernel-error"), "failed-to-start"),
        (TimeoutError(), "failed-to-start"),
    ],
)
def test_launch_failure_reasons(error: BaseException, reason: str) -> None:
    assert launch_failure_reason(error) == reason


def test_every_pull_reason_ends_a_session_in_error() -> None:
    assert PULL_ERROR_REASONS <= ERROR_REASONS
    assert {final_kernel_status(r) for r in PULL_ERROR_REASONS} == {"ERROR"}


def test_session_events_cli_shows_pull_progress() -> None:
    from backendai.client.cli_session import _describe_event

    data = {
        "sessionName": "s",
        "progress": {"layersDone": 1, "layersTotal": 2, "bytesDone": 3e6, "bytesTotal": 6e6},
    }
    assert _describe_event(json.dumps(data)) == "session=s layers=1/2 MB=3.0/6.0"
