"""The storage proxy over real HTTP: manager API, tus uploads, downloads, and what is refused."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import httpx
import trio

from .storage import Proxy, open_proxy
from .volumes import btrfs_volume

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


async def _folder(p: Proxy, fid: str, quota: int | None = None) -> Path:
    r = await p.manager.post("/v1/folders/local", json={"id": fid, "quota_bytes": quota})
    assert r.status_code == 201, r.text
    return Path(r.json()["mount_path"])


async def test_manager_api_needs_the_secret(tmp_path: Path) -> None:
    async with open_proxy(tmp_path) as p:
        async with httpx.AsyncClient(base_url=p.info.endpoint) as anonymous:
            r = await anonymous.get("/v1/volumes")
            assert r.status_code == 401
            assert r.json()["msg"] == "missing or wrong cluster secret"
            assert (await anonymous.get("/v1/health")).status_code == 200
        # The transfer port serves transfers only.
        assert (await p.client.get("/v1/health")).status_code == 200
        r = await p.client.get("/v1/volumes", headers={"Authorization": "Bearer x"})
        assert r.status_code == 404
        vols = (await p.manager.get("/v1/volumes")).json()["volumes"]
        assert (await p.manager.get("/v1/volumes")).json()["public_url"] == p.info.public_url
        assert [(v["name"], v["backend"]) for v in vols] == [("local", "vfs")]


async def test_folder_lifecycle_and_file_operations(tmp_path: Path) -> None:
    async with open_proxy(tmp_path) as p:
        root = await _folder(p, "f1", 10_000_000)
        assert root.is_dir()
        dup = await p.manager.post("/v1/folders/local", json={"id": "f1"})
        assert dup.status_code == 409
        r = await p.manager.post(
            "/v1/folders/local/f1/mkdir", json={"path": "a/b", "parents": True}
        )
        assert r.status_code == 204, r.text
        (root / "a" / "x.txt").write_text("hello")
        r = await p.manager.post(
            "/v1/folders/local/f1/rename-file", json={"path": "a/x.txt", "new_name": "y.txt"}
        )
        assert r.status_code == 204, r.text
        r = await p.manager.post(
            "/v1/folders/local/f1/move-file", json={"src": "a/y.txt", "dst": "a/b"}
        )
        assert r.status_code == 204, r.text
        items = (await p.manager.get("/v1/folders/local/f1/files", params={"path": "a/b"})).json()
        assert [(i["name"], i["type"], i["size"]) for i in items["items"]] == [("y.txt", "FILE", 5)]
        info = (await p.manager.get("/v1/folders/local/f1")).json()
        assert (info["quota_bytes"], info["file_count"], info["used_bytes"]) == (10_000_000, 1, 5)
        r = await p.manager.put("/v1/folders/local/f1/quota", json={"quota_bytes": 20_000_000})
        assert r.json() == {"quota_bytes": 20_000_000}
        r = await p.manager.post("/v1/folders/local/f1/clone", json={"target_id": "f2"})
        assert r.status_code == 201, r.text
        assert (Path(r.json()["mount_path"]) / "a" / "b" / "y.txt").read_text() == "hello"
        r = await p.manager.post(
            "/v1/folders/local/f1/delete-files", json={"paths": ["a"], "recursive": False}
        )
        assert r.status_code == 400
        assert "is a directory; pass recursive=true" in r.json()["msg"]
        r = await p.manager.post(
            "/v1/folders/local/f1/delete-files", json={"paths": ["a"], "recursive": True}
        )
        assert r.status_code == 204
        assert (await p.manager.delete("/v1/folders/local/f1")).status_code == 204
        r = await p.manager.get("/v1/folders/local/f1")
        assert r.status_code == 404
        assert r.json()["type"].endswith("/vfolder-not-found")
        r = await p.manager.get("/v1/folders/nope/f2")
        assert r.status_code == 404
        assert "no volume 'nope'" in r.json()["msg"]


async def test_listing_paginates(tmp_path: Path) -> None:
    async with open_proxy(tmp_path) as p:
        root = await _folder(p, "many")
        for i in range(2345):
            (root / f"f{i:05d}").touch()
        names: list[str] = []
        offset = 0
        while True:
            r = await p.manager.get(
                "/v1/folders/local/many/files", params={"offset": offset, "limit": 1000}
            )
            page = [i["name"] for i in r.json()["items"]]
            if not page:
                break
            names += page
            offset += len(page)
        assert sorted(names) == [f"f{i:05d}" for i in range(2345)]
        r = await p.manager.get("/v1/folders/local/many/files", params={"limit": "x"})
        assert r.status_code == 400
        assert "query limit='x'" in r.json()["msg"]


async def test_tus_upload_in_chunks_appears_only_when_complete(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    async with open_proxy(tmp_path) as p:
        root = await _folder(p, "up")
        url = f"/upload?token={p.token('upload', 'up', 'd/e/data.bin', size=len(data))}"
        opts = await p.client.options("/upload")
        assert opts.headers["tus-version"] == "1.0.0"
        r = await p.client.post(url, headers={**TUS, "Upload-Length": str(len(data))})
        assert r.status_code == 201, r.text
        location = r.headers["location"]
        step = 1024 * 1024
        offset = 0
        while offset < len(data):
            head = await p.client.head(location, headers=TUS)
            assert int(head.headers["upload-offset"]) == offset
            assert int(head.headers["upload-length"]) == len(data)
            assert not (root / "d" / "e" / "data.bin").exists()
            chunk = data[offset : offset + step]
            r = await p.client.patch(
                location, content=chunk, headers={**PATCH, "Upload-Offset": str(offset)}
            )
            assert r.status_code == 204, r.text
            offset = int(r.headers["upload-offset"])
        assert (root / "d" / "e" / "data.bin").read_bytes() == data
        # Nothing is left behind in staging.
        assert list((p.volumes_dir / "local" / ".uploads" / "up").iterdir()) == []


async def test_tus_refusals(tmp_path: Path) -> None:
    async with open_proxy(tmp_path) as p:
        root = await _folder(p, "up")
        await _folder(p, "other")
        url = f"/upload?token={p.token('upload', 'up', 'x.bin', size=10)}"
        r = await p.client.patch(url, content=b"abc", headers={**PATCH, "Upload-Offset": "0"})
        assert r.status_code == 204
        r = await p.client.patch(url, content=b"def", headers={**PATCH, "Upload-Offset": "0"})
        assert r.status_code == 409
        assert "Upload-Offset 0 is not the current offset 3" in r.json()["msg"]
        r = await p.client.patch(url, content=b"x" * 20, headers={**PATCH, "Upload-Offset": "3"})
        assert r.status_code == 400
        assert "past the upload's length 10" in r.json()["msg"]
        r = await p.client.patch(url, content=b"d", headers={**TUS, "Upload-Offset": "3"})
        assert r.status_code == 400
        assert "expected application/offset+octet-stream" in r.json()["msg"]
        # A download token does not upload, an upload token does not download.
        down = p.token("download", "up", "x.bin")
        r = await p.client.patch(
            f"/upload?token={down}", content=b"d", headers={**PATCH, "Upload-Offset": "3"}
        )
        assert r.status_code == 403
        r = await p.client.get(url.replace("/upload", "/download"))
        assert r.status_code == 403
        assert "is for 'upload', not 'download'" in r.json()["msg"]
        expired = p.token("upload", "up", "x.bin", size=10, ttl=-5)
        r = await p.client.head(f"/upload?token={expired}", headers=TUS)
        assert r.status_code == 401
        assert (await p.client.patch("/upload", headers=PATCH)).status_code == 400
        # A token naming a path that leaves the folder (forged by someone with the secret).
        for bad in ("../other/x.bin", "/etc/passwd"):
            r = await p.client.patch(
                f"/upload?token={p.token('upload', 'up', bad, size=1)}",
                content=b"x",
                headers={**PATCH, "Upload-Offset": "0"},
            )
            assert r.status_code == 400, bad
        os.symlink(str(tmp_path), root / "escape")
        # Refused before any byte is taken, not after the last one.
        r = await p.client.post(
            f"/upload?token={p.token('upload', 'up', 'escape/owned', size=10**9)}", headers=TUS
        )
        assert r.status_code == 400
        assert "outside the folder through a symlink" in r.json()["msg"]
        (root / "adir").mkdir()
        r = await p.client.post(
            f"/upload?token={p.token('upload', 'up', 'adir', size=10)}", headers=TUS
        )
        assert r.status_code == 409
        assert "a directory is there" in r.json()["msg"]
        assert not (tmp_path / "owned").exists()
        assert list((root.parent / "other").iterdir()) == []


async def test_quota_refuses_an_upload_and_leaves_nothing(tmp_path: Path) -> None:
    async with open_proxy(tmp_path) as p:
        root = await _folder(p, "small", 1_000_000)
        (root / "existing").write_bytes(b"x" * 600_000)
        ok = p.token("upload", "small", "a.bin", size=300_000)
        r = await p.client.post(f"/upload?token={ok}", headers=TUS)
        assert r.status_code == 201
        big = p.token("upload", "small", "b.bin", size=200_000)
        r = await p.client.patch(
            f"/upload?token={big}", content=b"y" * 200_000, headers={**PATCH, "Upload-Offset": "0"}
        )
        assert r.status_code == 413
        body = r.json()
        assert body["type"].endswith("/vfolder-quota-exceeded")
        assert "folder 'small' would exceed its quota of 976.6 KiB (1000000 bytes)" in body["msg"]
        assert "600000 bytes used, 300000 promised to unfinished uploads" in body["msg"]
        # A refused body far larger than what the proxy drains still gets its answer.
        huge = p.token("upload", "small", "c.bin", size=40 * 1024 * 1024)
        with trio.fail_after(30):
            r = await p.client.patch(
                f"/upload?token={huge}",
                content=b"w" * (40 * 1024 * 1024),
                headers={**PATCH, "Upload-Offset": "0"},
            )
        assert r.status_code == 413
        assert sorted(os.listdir(root)) == ["existing"]


async def test_download_file_ranges_and_zip(tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    async with open_proxy(tmp_path) as p:
        root = await _folder(p, "dl")
        (root / "d" / "sub").mkdir(parents=True)
        (root / "d" / "empty").mkdir()
        (root / "d" / "big.bin").write_bytes(data)
        (root / "d" / "sub" / "s.txt").write_text("small")
        os.symlink("/etc/passwd", root / "d" / "leak")
        url = f"/download?token={p.token('download', 'dl', 'd/big.bin')}"
        r = await p.client.get(url)
        assert r.status_code == 200
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
        assert r.headers["accept-ranges"] == "bytes"
        assert "big.bin" in r.headers["content-disposition"]
        r = await p.client.get(url, headers={"Range": "bytes=1000-1999"})
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
        assert r.content == data[1000:2000]
        r = await p.client.get(url, headers={"Range": "bytes=-10"})
        assert r.content == data[-10:]
        r = await p.client.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert r.status_code == 416
        assert r.headers["content-range"] == f"bytes */{len(data)}"
        zurl = f"/download?token={p.token('download', 'dl', 'd', archive=True)}"
        async with p.client.stream("GET", zurl) as resp:
            assert resp.headers["content-type"] == "application/zip"
            raw = b"".join([piece async for piece in resp.aiter_bytes()])
        zf = zipfile.ZipFile(io.BytesIO(raw))
        assert sorted(zf.namelist()) == ["big.bin", "empty/", "sub/s.txt"]
        assert zf.read("big.bin") == data
        assert zf.read("sub/s.txt") == b"small"
        leak = f"/download?token={p.token('download', 'dl', 'd/leak')}"
        r = await p.client.get(leak)
        assert r.status_code == 400
        assert "outside the folder" in r.json()["msg"]
        r = await p.client.get(f"/download?token={p.token('download', 'dl', 'nope')}")
        assert r.status_code == 404


async def test_forged_folder_and_other_secret_refused(tmp_path: Path) -> None:
    async with open_proxy(tmp_path) as p:
        await _folder(p, "a")
        (await _folder(p, "b")).joinpath("secret.txt").write_text("b's")
        token = p.token("download", "a", "secret.txt")
        head, body, sig = token.split(".")
        # Swap folder a -> b in the payload, keep a's signature.
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload["folder"] = "b"
        forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        r = await p.client.get(f"/download?token={head}.{forged_body}.{sig}")
        assert r.status_code == 401
        assert "bad signature" in r.json()["msg"]


async def test_btrfs_quota_is_enforced_by_the_kernel(tmp_path: Path) -> None:
    # A session writing into the folder after the upload began takes the space; the upload's
    # own writes then fail (EDQUOT) and it is dropped whole.
    with btrfs_volume(tmp_path, size_mib=300, at=tmp_path / "volumes" / "fast"):
        async with open_proxy(tmp_path, volume_backends="fast=btrfs") as p:
            r = await p.manager.post(
                "/v1/folders/fast", json={"id": "q", "quota_bytes": 4 * 1024 * 1024}
            )
            assert r.status_code == 201, r.text
            root = Path(r.json()["mount_path"])
            size = 3 * 1024 * 1024
            url = f"/upload?token={p.token('upload', 'q', 'up.bin', size=size, volume='fast')}"
            assert (await p.client.post(url, headers=TUS)).status_code == 201
            (root / "by-session.bin").write_bytes(os.urandom(3 * 1024 * 1024))
            os.sync()
            r = await p.client.patch(
                url, content=os.urandom(size), headers={**PATCH, "Upload-Offset": "0"}
            )
            assert r.status_code == 413, r.text
            assert "writing 'up.bin' at offset" in r.json()["msg"]
            assert "quota exceeded" in r.json()["msg"].lower()
            assert sorted(os.listdir(root)) == ["by-session.bin"]
            assert os.listdir(root.parent / "staging") == []
            info = (await p.manager.get("/v1/folders/fast/q")).json()
            assert info["backend"] == "btrfs"
            assert info["file_count"] is None
            assert 3 * 1024 * 1024 <= info["used_bytes"] < 4 * 1024 * 1024
