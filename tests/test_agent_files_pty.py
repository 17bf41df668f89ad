"""Files and terminals of a kernel through the agent's RPC API, on local and Docker kernels."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tarfile
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

from tests.exec_agent import SECRET, ExecAgent, open_exec_agent
from tests.test_agent_execution import agent_kind  # noqa: F401 (the fixture)

LIMIT = 1024 * 1024


@pytest.fixture
async def agent(agent_kind: str) -> AsyncIterator[ExecAgent]:  # noqa: F811
    async with open_exec_agent(agent_kind, max_upload_bytes=LIMIT) as opened:
        yield opened


async def chunked(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_upload_download_list_and_archive(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    blob = os.urandom(700_000)
    files = f"/v1/kernels/{kid}/files"
    up = await agent.http.post(files, params={"path": "data/blob.bin"}, content=chunked(blob))
    assert up.status_code == 201, up.text
    assert up.json() == {"path": "data/blob.bin", "size": len(blob)}
    up = await agent.http.post(files, params={"path": "/home/work/data/empty.txt"}, content=b"")
    assert up.json() == {"path": "data/empty.txt", "size": 0}
    _, out, _ = await agent.run(
        kid,
        "query",
        "import hashlib\nprint(hashlib.sha256(open('data/blob.bin','rb').read()).hexdigest())",
    )
    import hashlib

    assert out.strip() == hashlib.sha256(blob).hexdigest()
    got = await agent.http.get(f"{files}/content", params={"path": "data/blob.bin"})
    assert got.status_code == 200
    assert got.content == blob
    listing = (await agent.http.get(files, params={"path": "data"})).json()
    assert [(f["name"], f["type"], f["size"]) for f in listing["files"]] == [
        ("blob.bin", "file", len(blob)),
        ("empty.txt", "file", 0),
    ]
    tar_resp = await agent.http.get(f"{files}/archive", params={"path": "data"})
    assert tar_resp.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(tar_resp.content)) as tar:
        assert sorted(tar.getnames()) == ["data", "data/blob.bin", "data/empty.txt"]
        member = tar.extractfile("data/blob.bin")
        assert member is not None
        assert member.read() == blob


async def test_bad_uploads_are_refused_and_everything_keeps_working(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    files = f"/v1/kernels/{kid}/files"
    cases: list[tuple[dict[str, Any], Any, int, str]] = [
        ({"path": "../escape.txt"}, b"x", 400, "'../escape.txt' leaves"),
        ({"path": "/etc/escape.txt"}, b"x", 400, "is outside"),
        ({"path": "a/../../escape.txt"}, b"x", 400, "leaves"),
        ({}, b"x", 400, "query parameter 'path' is missing"),
        (
            {"path": "big.bin"},
            b"\0" * (20 * LIMIT),
            413,
            "exceeds the agent's limit of 1048576 bytes",
        ),
        ({"path": "big2.bin"}, chunked(b"\0" * (20 * LIMIT)), 413, "more than 1048576 bytes"),
    ]
    for params, content, status, message in cases:
        resp = await agent.http.post(files, params=params, content=content)
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert message in resp.json()["msg"]
    listing = (await agent.http.get(files, params={"path": "."})).json()
    assert listing["files"] == []  # nothing written, not even a partial file
    if agent.kind == "local":
        assert not (agent.scratch / kid / "escape.txt").exists()
    missing = await agent.http.get(f"{files}/content", params={"path": "nope.txt"})
    assert missing.status_code == 404
    assert "'nope.txt'" in missing.json()["msg"]
    nokernel = await agent.http.post("/v1/kernels/ghost/files", params={"path": "a"}, content=b"x")
    assert nokernel.status_code == 404
    ok = await agent.http.post(files, params={"path": "fine.txt"}, content=b"fine")
    assert ok.status_code == 201
    _, out, _ = await agent.run(kid, "query", "print(open('fine.txt').read())")
    assert out == "fine\n"


# -- the pty websocket ---------------------------------------------------------------


async def ws_send(ws: WebSocketConnection, message: Any) -> None:
    await ws.send_message(message if isinstance(message, str) else json.dumps(message))


async def read_until(
    ws: WebSocketConnection, pattern: bytes, seen: bytearray
) -> list[dict[str, Any]]:
    """Read terminal output into *seen* until *pattern* matches; the other messages."""
    others = []
    with trio.fail_after(20):
        while re.search(pattern, seen) is None:
            message = json.loads(await ws.get_message())
            if message["type"] == "out":
                seen += base64.b64decode(message["data"])
            else:
                others.append(message)
    return others


def stdin(text: str) -> dict[str, str]:
    return {"type": "stdin", "chars": base64.b64encode(text.encode()).decode()}


async def test_pty_websocket_echo_resize_garbage_and_exit(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    url = f"ws://{agent.url.removeprefix('http://')}/v1/kernels/{kid}/pty?rows=20&cols=70"
    headers = [("Authorization", f"Bearer {SECRET}")]
    async with open_websocket_url(url, extra_headers=headers) as ws:
        seen = bytearray()
        await ws_send(ws, stdin("stty size; echo hello-$((6*7))\n"))
        await read_until(ws, rb"hello-42", seen)
        assert b"20 70" in seen
        await ws_send(ws, {"type": "resize", "rows": 40, "cols": 120})
        await ws_send(ws, stdin("stty size\n"))
        await read_until(ws, rb"40 120", seen)
        await ws_send(ws, "garbage{")
        await ws_send(ws, {"type": "stdin", "chars": "%%%"})
        await ws_send(ws, {"type": "resize", "rows": -1, "cols": 5})
        await ws_send(ws, {"type": "launch"})
        await ws_send(ws, {"type": "ping"})
        await ws_send(ws, stdin("echo still-$((1+1))\n"))
        others = await read_until(ws, rb"still-2", seen)
        errors = [m["msg"] for m in others if m["type"] == "error"]
        assert len(errors) == 4
        assert "not JSON" in errors[0]
        assert "not base64" in errors[1]
        assert "rows must be an integer" in errors[2]
        assert "unknown message type 'launch'" in errors[3]
        assert {"type": "pong"} in others
        await ws_send(ws, {"type": "restart"})
        fresh = bytearray()
        await ws_send(ws, stdin("echo restarted\n"))
        await read_until(ws, rb"restarted\r\n", fresh)
        await ws_send(ws, stdin("exit 3\n"))
        with trio.fail_after(20):
            while (message := json.loads(await ws.get_message()))["type"] != "exit":
                pass
        assert message == {"type": "exit", "code": 3}


async def test_pty_websocket_needs_the_cluster_secret(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    url = f"ws://{agent.url.removeprefix('http://')}/v1/kernels/{kid}/pty"
    with pytest.raises(ConnectionRejected) as e:
        async with open_websocket_url(url, extra_headers=[("Authorization", "Bearer wrong")]):
            pass
    assert e.value.status_code == 401
    with pytest.raises(ConnectionRejected) as e:
        async with open_websocket_url(
            url.replace(kid, "ghost"), extra_headers=[("Authorization", f"Bearer {SECRET}")]
        ):
            pass
    assert e.value.status_code == 404
