"""The API client and the session CLI against an in-process fake manager.

The fake answers through ``httpx.MockTransport`` and authenticates every request
with the manager's real check (backendai.manager.auth), so a signing mistake in
the client fails here as it would against the real manager.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from backendai.client.api import APIClient, APIResponseError, ClientConfig
from backendai.client.cli_session import add_session_commands
from backendai.client.output import format_kv, format_table
from backendai.client.sse import ServerSentEvent, decode_events
from backendai.config import Secret
from backendai.errors import AuthenticationFailed, ConfigError, UnavailableError
from backendai.manager.auth import check_request_signature

AK, SK = "AKTESTCLIENT", "client-secret-key/0123456789"
ENDPOINT = "http://manager.test:8081"


@dataclasses.dataclass(frozen=True)
class Keypair:
    secret_key: Secret
    is_active: bool = True


def problem(status: int, slug: str, title: str, msg: str) -> httpx.Response:
    body = {"type": f"https://api.backend.ai/probs/{slug}", "title": title, "msg": msg}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


class FakeManager:
    """Just enough of the manager's session API, with real signature checks."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.sessions: dict[str, dict[str, Any]] = {}
        self.sse_chunks: list[bytes] = []
        self.seen: list[httpx.Request] = []

    async def lookup(self, access_key: str) -> Keypair | None:
        return Keypair(Secret(SK)) if access_key == AK else None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path.removeprefix(self.prefix)
        if request.method == "GET" and path in ("", "/"):
            return httpx.Response(200, json={"version": "v7.20230615", "manager": "fake"})
        raw_target = request.url.raw_path.decode("ascii")
        try:
            await check_request_signature(
                request.method, raw_target, request.headers, self.lookup, now=time.time()
            )
        except AuthenticationFailed as e:
            return problem(401, e.slug, e.title, str(e))
        parts = [unquote(p) for p in raw_target.partition("?")[0].strip("/").split("/")]
        parts = parts[1:] if self.prefix else parts
        if parts == ["session"] and request.method == "POST":
            return self.create(json.loads(request.content))
        if parts == ["session"]:
            wanted = request.url.params.get("status")
            statuses = wanted.upper().split(",") if wanted else None
            return httpx.Response(200, json={"sessions": [
                s for s in self.sessions.values() if statuses is None or s["status"] in statuses
            ]})  # fmt: skip
        if parts == ["events", "session"]:
            return httpx.Response(
                200, headers={"Content-Type": "text/event-stream"}, content=self.stream()
            )
        if parts[0] == "session" and len(parts) >= 2:
            found = self.sessions.get(parts[1])
            if found is None:
                return problem(404, "session-not-found", "No such session", f"no {parts[1]!r}")
            if parts[2:] == ["logs"]:
                return httpx.Response(200, json={"result": {"logs": f"hello from {parts[1]}\n"}})
            if request.method == "DELETE":
                found["status"] = "TERMINATED"
                return httpx.Response(200, json={"stats": {}})
            return httpx.Response(200, json=found)
        return problem(404, "not-found", "No such resource", path)

    def create(self, body: dict[str, Any]) -> httpx.Response:
        name = body["sessionName"]
        if name in self.sessions:
            return problem(409, "session-already-exists", "Conflict", f"{name!r} exists")
        self.sessions[name] = {
            "sessionId": str(uuid.uuid4()),
            "sessionName": name,
            "status": "PENDING" if body["enqueueOnly"] else "RUNNING",
            "image": body["image"],
            "type": body["type"],
            "createdAt": "2023-06-15T12:00:00+00:00",
            "requestedSlots": body["config"]["resources"],
        }
        s = self.sessions[name]
        answer = {k: s[k] for k in ("sessionId", "sessionName", "status")}
        return httpx.Response(201, json={**answer, "servicePorts": [], "created": True})

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.sse_chunks:
            yield chunk


@pytest.fixture
def fake() -> FakeManager:
    return FakeManager()


def client(fake: FakeManager, **kwargs: Any) -> APIClient:
    kwargs.setdefault("transport", fake.transport())
    return APIClient(ENDPOINT + fake.prefix, AK, kwargs.pop("secret", SK), **kwargs)


async def test_session_round_trip(fake: FakeManager) -> None:
    async with client(fake) as api:
        assert (await api.get_version())["version"] == "v7.20230615"
        created = await api.create_session("python:3.11", "s1", resources={"cpu": "2"})
        assert created["status"] == "RUNNING"
        assert created["sessionName"] == "s1"
        assert (await api.get_session("s1"))["requestedSlots"] == {"cpu": "2"}
        assert [s["sessionName"] for s in await api.list_sessions()] == ["s1"]
        assert await api.get_logs("s1") == "hello from s1\n"
        await api.destroy_session("s1", forced=True)
        assert await api.list_sessions("pending,running") == []
        assert [s["status"] for s in await api.list_sessions(all=True)] == ["TERMINATED"]
    assert "Authorization" not in fake.seen[0].headers  # the version probe is unsigned
    assert fake.seen[-3].url.params["forced"] == "true"


async def test_generated_name_and_odd_characters_sign_correctly(fake: FakeManager) -> None:
    fake.prefix = "/api"
    async with client(fake) as api:
        created = await api.create_session("img", None, enqueue_only=True)
        assert created["sessionName"].startswith("session-")
        assert created["status"] == "PENDING"
        with pytest.raises(APIResponseError, match="no 'a b/c'"):
            await api.get_session("a b/c")
        assert await api.list_sessions("RUNNING &*=") == []
    assert fake.seen[-1].url.raw_path.startswith(b"/api/session?status=")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"secret": "wrong"}, "signature mismatch for access key 'AKTESTCLIENT'"),
        ({"clock": lambda: datetime.now(UTC) - timedelta(minutes=20)}, "behind the server time"),
        ({"clock": lambda: datetime.now(UTC) + timedelta(minutes=16)}, "ahead of the server time"),
    ],
)
async def test_rejected_signature_is_an_api_error(
    fake: FakeManager, kwargs: dict[str, Any], fragment: str
) -> None:
    async with client(fake, **kwargs) as api:
        with pytest.raises(APIResponseError) as info:
            await api.get_session("s1")
    assert (info.value.status, info.value.slug) == (401, "auth-failed")
    assert info.value.title == "Credential/signature mismatch"
    assert fragment in info.value.msg


async def test_problem_json_and_plain_errors(fake: FakeManager) -> None:
    async with client(fake) as api:
        await api.create_session("img", "dup")
        with pytest.raises(APIResponseError) as info:
            await api.create_session("img", "dup")
        assert str(info.value) == "Conflict: 'dup' exists (HTTP 409, session-already-exists)"

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    async with client(fake, transport=httpx.MockTransport(broken)) as api:
        with pytest.raises(APIResponseError, match=r"Bad Gateway: <html>bad gateway</html>"):
            await api.get_session("s1")


async def test_unreachable_manager_names_the_endpoint(fake: FakeManager) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    async with client(fake, transport=httpx.MockTransport(refuse)) as api:
        with pytest.raises(UnavailableError, match=f"manager at {ENDPOINT}: .*refused"):
            await api.list_sessions()


SSE_CASES = [
    ("event: a\ndata: 1\n\n", [ServerSentEvent("a", "1")]),
    ("data: x\ndata:  y\ndata\n\n", [ServerSentEvent("message", "x\n y\n")]),
    (": keepalive\n\n:\ndata: z\n\n", [ServerSentEvent("message", "z")]),
    ("event: empty\n\n", []),  # no data: nothing dispatched
    ("data: unfinished", []),  # no blank line before the end
    (
        "\ufeffid: 7\nretry: 3000\ndata: a\n\ndata: b\n\n",
        [
            ServerSentEvent("message", "a", "7", 3000),
            ServerSentEvent("message", "b", "7", 3000),
        ],
    ),
    ("retry: soon\nunknown: q\ndata:tight\n\n", [ServerSentEvent("message", "tight")]),
]


@pytest.mark.parametrize(("text", "events"), SSE_CASES)
def test_sse_decoding(text: str, events: list[ServerSentEvent]) -> None:
    assert decode_events(text.split("\n")) == events


async def test_event_stream_over_http(fake: FakeManager) -> None:
    stream = (
        b': ping\r\n\r\nevent: session_started\r\ndata: {"sessionName": "s1"}\r\n\r\n'
        b"event: kernel_started\ndata: line1\ndata: line2\n\n"
        b"event: server_close\ndata: {}\n\nevent: never\ndata: seen\n\n"
    )
    fake.sse_chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    async with client(fake) as api, api.stream_events("s1", scope="session") as events:
        got = [(e.event, e.data) for e in [event async for event in events]]
    assert got == [("session_started", '{"sessionName": "s1"}'), ("kernel_started", "line1\nline2")]
    assert dict(fake.seen[-1].url.params) == {"scope": "session", "sessionName": "s1"}


@pytest.mark.parametrize(
    ("env", "problem_text"),
    [
        ({"BACKEND_ENDPOINT_TYPE": "session"}, "BACKEND_ENDPOINT_TYPE: 'session' is not supported"),
        ({}, "BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY not set"),
        ({"BACKEND_ACCESS_KEY": AK}, "BACKEND_SECRET_KEY not set"),
        ({"BACKEND_ENDPOINT": "manager:8081"}, "'manager:8081' is not one http(s) URL"),
        ({"BACKEND_ENDPOINT": "http://a,http://b"}, "is not one http(s) URL"),
    ],
)
def test_client_config_errors(env: dict[str, str], problem_text: str) -> None:
    keys = {} if "ACCESS" in problem_text or "SECRET" in problem_text else {
        "BACKEND_ACCESS_KEY": AK, "BACKEND_SECRET_KEY": SK,
    }  # fmt: skip
    with pytest.raises(ConfigError, match=problem_text.replace("(", r"\(").replace(")", r"\)")):
        ClientConfig.from_env({**keys, **env})


def test_client_config_from_env() -> None:
    config = ClientConfig.from_env({"BACKEND_ACCESS_KEY": AK, "BACKEND_SECRET_KEY": SK})
    assert (config.endpoint, config.access_key, config.secret_key.reveal()) == (
        "http://127.0.0.1:8081", AK, SK,
    )  # fmt: skip
    assert SK not in repr(config)


def test_table_and_kv_formatting() -> None:
    table = format_table(["A", "LONGER"], [["xx", None], ["y", {"k": 1}]])
    assert table.splitlines() == ["A   LONGER", "xx  -", 'y   {"k":1}']
    assert format_kv({"a": 1, "bbb": [1, 2]}) == "a    1\nbbb  [1,2]"


# --- the CLI ---------------------------------------------------------------------------

ENV = {"BACKEND_ENDPOINT": ENDPOINT, "BACKEND_ACCESS_KEY": AK, "BACKEND_SECRET_KEY": SK}


def cli(argv: list[str], fake: FakeManager, env: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backendai")
    add_session_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args, env=ENV if env is None else env, transport=fake.transport())
    return code


def test_cli_create_list_info_destroy(
    fake: FakeManager, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["session", "create", "py:3", "--name", "s1", "-r", "cpu=2", "-e", "A=b"], fake) == 0
    assert capsys.readouterr().out.startswith("Session s1 (")
    assert fake.sessions["s1"]["requestedSlots"] == {"cpu": "2"}
    assert cli(["session", "list"], fake) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["SESSION", "ID", "NAME", "STATUS", "IMAGE", "TYPE", "CREATED"]
    assert row.split()[1:4] == ["s1", "RUNNING", "py:3"]
    assert cli(["session", "list", "--json"], fake) == 0
    assert json.loads(capsys.readouterr().out)[0]["sessionName"] == "s1"
    assert cli(["session", "info", "s1"], fake) == 0
    assert "status          RUNNING" in capsys.readouterr().out
    assert cli(["session", "logs", "s1"], fake) == 0
    assert capsys.readouterr().out == "hello from s1\n"
    assert cli(["session", "destroy", "s1"], fake) == 0
    assert capsys.readouterr().out == "Session s1 is being terminated.\n"
    assert cli(["session", "list", "--status", "RUNNING"], fake) == 0
    assert capsys.readouterr().out == "No sessions.\n"


def test_cli_errors_and_exit_codes(fake: FakeManager, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["session", "info", "nope"], fake) == 1
    assert capsys.readouterr().err == (
        "error: No such session: no 'nope' (HTTP 404, session-not-found)\n"
    )
    assert cli(["session", "info", "x"], fake, env={**ENV, "BACKEND_SECRET_KEY": "bad"}) == 1
    assert "signature mismatch" in capsys.readouterr().err
    assert cli(["session", "list"], fake, env={"BACKEND_ENDPOINT_TYPE": "session"}) == 78
    with pytest.raises(SystemExit) as info:
        cli(["session", "create", "img", "-r", "cpu"], fake)
    assert info.value.code == 2
    assert "'cpu' is not KEY=VALUE" in capsys.readouterr().err

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    fake.transport = lambda: httpx.MockTransport(refuse)  # type: ignore[method-assign]
    assert cli(["session", "list"], fake) == 69
    assert f"cannot reach the manager at {ENDPOINT}" in capsys.readouterr().err


def test_cli_events(fake: FakeManager, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.dumps({"sessionName": "s1", "reason": "user-requested", "exitCode": 0})
    fake.sse_chunks = [f"event: session_terminated\ndata: {data}\n\n".encode()]
    assert cli(["session", "events", "s1"], fake) == 0
    line = capsys.readouterr().out.strip()
    assert line.split() == ["session_terminated", "session=s1", "reason=user-requested", "exit=0"]
    sid = str(uuid.uuid4())
    assert cli(["session", "events", sid, "--json", "--scope", "kernel"], fake) == 0
    assert json.loads(capsys.readouterr().out)["event"] == "session_terminated"
    assert dict(fake.seen[-1].url.params) == {"scope": "kernel", "sessionId": sid}
