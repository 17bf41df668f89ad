"""Our manager's check accepts what the official client ``backend.ai-client==23.9.10`` signs.

The official client lives in its own virtual environment (it pins old aiohttp/yarl):
``$BACKENDAI_TEST_CACHE/bai-client-venv`` (default ``~/.cache/backendai-test``), made on
first use and reused after.  A script run there sends real requests through the
official SDK to a capture server and signs fixed vectors with its own
``generate_signature``; the test checks both with our code.  In CI (``CI`` set) an
environment that cannot be made is a failure, elsewhere a skip.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from backendai.client.signing import parse_authorization, verify_signature
from backendai.config import Secret
from backendai.errors import AuthenticationFailed
from backendai.manager.auth import check_request_signature

pytestmark = pytest.mark.slow

AK = "AKIAOFFICIALCLIENT01"
SK = "s3cr3t-Key/With+Odd=Chars0123456789abcd"

SCRIPT = r"""
import asyncio, json, sys
from datetime import datetime, timezone, timedelta
from yarl import URL
from ai.backend.client.auth import generate_signature
from ai.backend.client.config import APIConfig
from ai.backend.client.request import Request
from ai.backend.client.session import AsyncSession

AK, SK = sys.argv[1], sys.argv[2]
captured = []

async def handle(reader, writer):
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = [line.split(": ", 1) for line in lines if line]
    length = int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
    if length:
        await reader.readexactly(length)
    captured.append({"method": method, "target": target, "headers": headers})
    if target.startswith("/events/"):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                     b"event: server_close\ndata: {}\n\n")
    else:
        body = json.dumps({"version": "v7.20230615", "manager": "capture"}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    writer.close()

async def send_requests():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = APIConfig(endpoint=f"http://127.0.0.1:{port}", access_key=AK, secret_key=SK)
    async with AsyncSession(config=config) as session:
        for method, path, params, body in [
            ("GET", "/session/my-session", {"owner_access_key": "AK2", "q": "a b"}, None),
            ("POST", "/session", None, {"image": "python:3.11", "sessionName": "s1"}),
            ("DELETE", "/session/s1", {"forced": "true"}, None),
        ]:
            rqst = Request(method, path, params=params)
            if body is not None:
                rqst.set_json(body)
            async with rqst.fetch() as resp:
                await resp.text()
        rqst = Request("GET", "/events/session", params={"sessionName": "s1", "scope": "*"})
        async with rqst.connect_events() as resp:
            async for _ in resp:
                pass
    server.close()

def vectors():
    out = []
    date = datetime(2023, 6, 15, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=9)))
    for hash_type in ["sha256", "sha1", "sha512"]:
        for endpoint in ["http://127.0.0.1:8081", "https://manager.example/api"]:
            _, sig = generate_signature(
                method="POST", version="v7.20230615", endpoint=URL(endpoint), date=date,
                rel_url="/session?x=1", content_type="application/json",
                access_key=AK, secret_key=SK, hash_type=hash_type,
            )
            out.append({"hash": hash_type, "host": URL(endpoint)._val.netloc,
                        "date": date.isoformat(), "signature": sig})
    return out

asyncio.run(send_requests())
print(json.dumps({"requests": captured[1:], "probe": captured[0], "vectors": vectors()}))
"""


@dataclasses.dataclass(frozen=True)
class Keypair:
    secret_key: Secret
    is_active: bool = True


async def lookup(access_key: str) -> Keypair | None:
    return Keypair(Secret(SK)) if access_key == AK else None


@pytest.fixture(scope="module")
def official_output(official_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("official")  # its own cwd: the SDK reads a .env there
    script = workdir / "official_sign.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    result = subprocess.run(
        [official_python, script, AK, SK],
        capture_output=True,
        cwd=workdir,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return json.loads(result.stdout)


async def test_official_requests_pass_our_check(official_output: dict[str, Any]) -> None:
    requests = official_output["requests"]
    assert [r["method"] for r in requests] == ["GET", "POST", "DELETE", "GET"]
    # The version probe (GET /) is not signed.
    assert "Authorization" not in dict(official_output["probe"]["headers"])
    for request in requests:
        headers = dict(request["headers"])
        keypair = await check_request_signature(
            request["method"], request["target"], headers, lookup, now=time.time()
        )
        assert keypair.secret_key == Secret(SK)


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda t, h: (t + "&extra=1", h), "signature mismatch"),
        (lambda t, h: (t, {**h, "Host": "127.0.0.1:1"}), "signature mismatch"),
        (lambda t, h: (t, {**h, "Content-Type": "application/json"}), "signature mismatch"),
        (lambda t, h: (t, {**h, "X-BackendAI-Version": "v6.20220615"}), "signature mismatch"),
        (
            lambda t, h: (t, {**h, "Authorization": h["Authorization"].replace(AK, "AKX")}),
            "unknown",
        ),
    ],
)
async def test_tampered_official_request_is_rejected(
    official_output: dict[str, Any], tamper: Any, problem: str
) -> None:
    request = official_output["requests"][0]
    target, headers = tamper(request["target"], dict(request["headers"]))
    with pytest.raises(AuthenticationFailed, match=problem):
        await check_request_signature(request["method"], target, headers, lookup, now=time.time())


async def test_official_wire_format(official_output: dict[str, Any]) -> None:
    """The facts our client mirrors: Date format, what is signed for GET and for events."""
    get, post, _, events = official_output["requests"]
    get_headers, event_headers = dict(get["headers"]), dict(events["headers"])
    assert get["target"] == "/session/my-session?owner_access_key=AK2&q=a+b"
    assert get_headers["Content-Type"] == "text/plain"
    assert dict(post["headers"])["Content-Type"] == "application/json"
    assert "Content-Type" not in event_headers  # signed as application/octet-stream
    assert get_headers["X-BackendAI-Version"] == "v7.20230615"
    assert "T" in get_headers["Date"]
    assert get_headers["Date"].endswith("+00:00")
    assert parse_authorization(get_headers["Authorization"]).sign_method == "HMAC-SHA256"


async def test_official_vectors_verify(official_output: dict[str, Any]) -> None:
    for vector in official_output["vectors"]:
        args = ("POST", "/session?x=1", vector["date"], vector["host"], "application/json")
        ok = verify_signature(
            *args, "v7.20230615", SK, vector["signature"], hash_name=vector["hash"]
        )
        assert ok, vector
        assert not verify_signature(
            *args, "v7.20230615", SK + "x", vector["signature"], hash_name=vector["hash"]
        )
