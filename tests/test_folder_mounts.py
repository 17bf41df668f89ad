"""Folders mounted into sessions on real Docker: read-only enforced by the bind mount."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from backendai.client.api import APIClient, APIResponseError

from .cluster import Cluster, add_user, cluster_config, open_cluster

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "backendai/python:3.11"
TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}

PROBE = """
import errno, os
print(open('/home/work/ro-data/hello.txt').read())
try:
    open('/home/work/ro-data/new.txt', 'w').write('x')
    print('ro write: allowed')
except OSError as e:
    print('ro write:', errno.errorcode[e.errno])
os.makedirs('/home/work/out/sub', exist_ok=True)
open('/home/work/out/sub/result.txt', 'w').write('from the kernel')
print('rw write: ok')
"""


async def _json(c: Cluster, method: str, path: str, body: Any = None) -> Any:
    r = await c.api.request(method, path, json=body)
    return r.json() if r.content else None


async def _run(c: Cluster, session: str, code: str) -> str:
    return await _run_as(c.api, session, code)


async def _run_as(api: APIClient, session: str, code: str) -> str:
    out = ""
    body: dict[str, Any] = {"mode": "query", "code": code}
    with trio.fail_after(60):
        while True:
            result = (await api.request("POST", f"/session/{session}", json=body)).json()
            result = result["result"]
            out += "".join(d for k, d in result["console"] if k in ("stdout", "stderr"))
            if result["status"] != "continued":
                return out
            body = {"mode": "continue", "runId": result["runId"], "code": ""}


async def test_read_only_and_read_write_mounts(tmp_path: Path, kernel_image: str) -> None:
    config = cluster_config(tmp_path / "data", agent={"backend": "docker"})
    async with open_cluster(config) as c:
        await _json(c, "POST", "/folders", {"name": "ro-data"})
        await _json(c, "POST", "/folders", {"name": "rw-out"})
        up = await _json(
            c, "POST", "/folders/ro-data/request-upload", {"path": "hello.txt", "size": 5}
        )
        async with httpx.AsyncClient() as http:
            r = await http.patch(
                up["url"],
                params={"token": up["token"]},
                content=b"hello",
                headers={**TUS, "Upload-Offset": "0"},
            )
            assert r.status_code == 204, r.text
        for bad, message in (
            ({"mounts": ["nope"]}, "no virtual folder 'nope'"),
            ({"mounts": ["rw-out"], "mount_map": {"rw-out": "/etc"}}, "expected a path under"),
        ):
            with pytest.raises(APIResponseError) as e:
                await c.api.request(
                    "POST", "/session", json={"image": IMAGE, "sessionName": "bad1", "config": bad}
                )
            assert message in e.value.msg
        body = {
            "image": IMAGE,
            "sessionName": "mounts",
            "maxWaitSeconds": 90,
            "config": {
                "mounts": ["ro-data", "rw-out"],
                "mount_map": {"rw-out": "out"},
                "mount_options": {"ro-data": {"permission": "ro"}},
            },
        }
        created = (await c.api.request("POST", "/session", json=body)).json()
        assert created["status"] == "RUNNING", created
        out = await _run(c, "mounts", PROBE)
        assert "hello" in out
        assert "ro write: EROFS" in out
        assert "rw write: ok" in out
        listing = await _json(c, "GET", "/folders/rw-out/files?path=sub")
        assert [i["name"] for i in listing["items"]] == ["result.txt"]
        names = [i["name"] for i in (await _json(c, "GET", "/folders/ro-data/files"))["items"]]
        assert names == ["hello.txt"]

        # A user the folder is shared with read-only gets a read-only mount, asked or not.
        reader_api = await add_user(c, "ro@example.com")
        await c.api.request(
            "POST", "/folders/rw-out/share", json={"permission": "ro", "emails": ["ro@example.com"]}
        )
        async with reader_api as reader:
            body = {
                "image": IMAGE,
                "sessionName": "reader",
                "maxWaitSeconds": 90,
                "config": {"mounts": ["rw-out"]},
            }
            created = (await reader.request("POST", "/session", json=body)).json()
            assert created["status"] == "RUNNING", created
            code = (
                "import errno\n"
                "print(open('/home/work/rw-out/sub/result.txt').read())\n"
                "try:\n"
                "    open('/home/work/rw-out/x', 'w')\n"
                "    print('write: allowed')\n"
                "except OSError as e:\n"
                "    print('write:', errno.errorcode[e.errno])\n"
            )
            out = await _run_as(reader, "reader", code)
            assert "from the kernel" in out
            assert "write: EROFS" in out
            await reader.request("DELETE", "/session/reader")
