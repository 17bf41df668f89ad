"""100,000 files: the listing streams and pages; a usage scan leaves the event loop free."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from .storage import open_proxy

pytestmark = pytest.mark.slow

COUNT = 100_000


def _touch_many(root: Path) -> None:
    for i in range(COUNT):
        os.close(os.open(root / f"f{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644))


async def test_listing_100k_streams_and_paginates(tmp_path: Path) -> None:
    async with open_proxy(tmp_path) as p:
        r = await p.manager.post("/v1/folders/local", json={"id": "many"})
        root = Path(r.json()["mount_path"])
        await trio.to_thread.run_sync(_touch_many, root)
        pieces = 0
        raw = b""
        async with p.manager.stream("GET", "/v1/folders/local/many/files") as resp:
            assert resp.headers.get("transfer-encoding") == "chunked"  # no length: streamed
            async for piece in resp.aiter_raw():
                pieces += 1
                raw += piece
        items = json.loads(raw)["items"]
        assert len(items) == COUNT
        assert pieces > 10, "the listing came in one piece: it was built before it was sent"
        names: set[str] = set()
        for page in range(10):
            r = await p.manager.get(
                "/v1/folders/local/many/files", params={"offset": page * 10_000, "limit": 10_000}
            )
            batch = [i["name"] for i in r.json()["items"]]
            assert len(batch) == 10_000
            names.update(batch)
        assert names == {f"f{i:06d}" for i in range(COUNT)}
        r = await p.manager.get("/v1/folders/local/many/files", params={"offset": COUNT})
        assert r.json()["items"] == []


async def test_usage_scan_leaves_the_event_loop_free(tmp_path: Path) -> None:
    async with open_proxy(tmp_path) as p:
        r = await p.manager.post("/v1/folders/local", json={"id": "many"})
        await trio.to_thread.run_sync(_touch_many, Path(r.json()["mount_path"]))
        # While a scan runs, the same proxy keeps answering. A scan that held the event loop
        # would let no health check finish before it; try a few scans in case one is quick.
        for _ in range(5):
            answered_during_scan = 0
            scanning = True

            async def scan() -> None:
                nonlocal scanning
                usage = (await p.manager.get("/v1/folders/local/many/usage")).json()
                assert usage["file_count"] == COUNT
                scanning = False

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scan)
                await trio.lowlevel.checkpoint()
                while scanning:
                    assert (await p.client.get("/v1/health")).status_code == 200
                    if scanning:
                        answered_during_scan += 1
            if answered_during_scan:
                return
        raise AssertionError("no request was answered while a usage scan ran")
