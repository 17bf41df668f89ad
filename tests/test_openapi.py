"""The OpenAPI document: true to the registered routes, served, and fuzzed with schemathesis."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, Phase, given, settings

from backendai.client.signing import sign_request
from backendai.config import load_config
from backendai.manager.api import API_VERSION, create_app
from backendai.manager.openapi import ROUTES, openapi_document
from tests.cluster import Cluster, cluster_config, open_cluster

# Not fuzzed: streams that stay open (SSE, websockets), and registering a registry, which
# connects to whatever URL it is given (tests send traffic only to loopback).
_NOT_FUZZED = {
    ("GET", "/events/session"),
    ("GET", "/stream/session/{ref}/execute"),
    ("GET", "/stream/session/{ref}/pty"),
    ("POST", "/admin/registries"),
}
FUZZ_REQUESTS = 2000
_TIMEOUT = 15.0
FUZZ_BUDGET = 150.0  # seconds; a loaded 2-core CI machine does ~2000 in well under this


def _files(raw: Any) -> list[tuple[str, tuple[str, bytes | str]]] | None:
    """Multipart parts as httpx takes them, whatever shape the generator gave."""
    if not raw:
        return None
    out = []
    for name, value in raw.items() if isinstance(raw, dict) else raw:
        part = value[1] if isinstance(value, tuple) and len(value) > 1 else value
        out.append((str(name), ("part", part if isinstance(part, bytes | str) else str(part))))
    return out


def _registered() -> set[tuple[str, str]]:
    app = create_app(SimpleNamespace(config=load_config(None, env={}), storage=None))  # type: ignore[arg-type]
    found = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((method, path))
    return found


def test_the_document_names_exactly_the_registered_routes() -> None:
    documented = {(r.method, r.path) for r in ROUTES}
    registered = _registered()
    assert registered - documented == set(), "routes missing from the OpenAPI document"
    assert documented - registered == set(), "documented routes the app does not have"
    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == documented


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    # Creating a session returns within a second, so fuzzed creations do not hold the run.
    config = cluster_config(tmp_path, manager={"max_wait_limit": 1.0})
    async with open_cluster(config) as c:
        yield c


async def test_the_manager_serves_the_document(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.endpoint) as http:
        resp = await http.get("/openapi.json")  # unsigned, like GET /
    assert resp.status_code == 200
    assert resp.json() == openapi_document(cluster.endpoint)


def _fuzz(endpoint: str, access_key: str, secret_key: str) -> tuple[Counter[int], list[str]]:
    """Signed requests generated from the document; the status codes seen and each 5xx."""
    schema = schemathesis.openapi.from_dict(openapi_document(endpoint))
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if (op.method.upper(), op.path) not in _NOT_FUZZED
    ]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    host = httpx.URL(endpoint).netloc.decode()
    started = time.monotonic()
    with httpx.Client(timeout=_TIMEOUT) as http:

        def send(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url=endpoint)
            headers = {
                k: v
                for k, v in kwargs.get("headers", {}).items()
                if k.lower() not in ("authorization", "date", "x-backendai-version")
            }
            request = http.build_request(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers=headers,
                json=kwargs.get("json"),
                content=kwargs.get("data") if isinstance(kwargs.get("data"), bytes | str) else None,
                files=_files(kwargs.get("files")),
            )
            date = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
            content_type = request.headers.get("Content-Type", "application/octet-stream")
            request.headers["Date"] = date
            request.headers["X-BackendAI-Version"] = API_VERSION
            request.headers["Authorization"] = sign_request(
                request.method,
                request.url.raw_path.decode("ascii"),
                date,
                host,
                content_type.partition(";")[0].strip(),
                API_VERSION,
                access_key,
                secret_key,
            )
            try:
                response = http.send(request)
            except httpx.TimeoutException:
                failures.append(f"{request.method} {request.url}: no answer in {_TIMEOUT} s")
                return
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{request.method} {request.url} -> {response.status_code}: {response.text[:300]}"
                )

        rounds = 0
        while sum(statuses.values()) < FUZZ_REQUESTS and time.monotonic() - started < FUZZ_BUDGET:
            rounds += 1
            for op in operations:

                @settings(
                    max_examples=80,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=op.as_strategy())
                def run(case: Any) -> None:
                    send(case)

                run()
    return statuses, failures


@pytest.mark.slow
async def test_fuzzing_the_api_gives_no_server_error(cluster: Cluster) -> None:
    creds = cluster.info.manager.credentials
    statuses, failures = await trio.to_thread.run_sync(
        _fuzz, cluster.endpoint, creds.access_key, creds.secret_key
    )
    total = sum(statuses.values())
    assert failures == [], "\n".join(failures[:20])
    assert total >= FUZZ_REQUESTS, f"only {total} requests in {FUZZ_BUDGET} s: {statuses}"
    # The fuzz reached the handlers, not just the authentication in front of them.
    assert statuses[401] < total / 10, statuses
    assert sum(n for code, n in statuses.items() if 200 <= code < 300) > 0, statuses
